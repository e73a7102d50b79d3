// AudioWorklet: downsamples the microphone to 16 kHz and posts PCM16 chunks to the page.
import { Downsampler, toPcm16 } from "./resample.js";

class SaijinMic extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const chunk = (options.processorOptions && options.processorOptions.chunk) || 640;
    this.down = new Downsampler(sampleRate, 16000);
    this.chunk = new Float32Array(chunk);
    this.fill = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const out = this.down.process(channel);
    for (let i = 0; i < out.length; i++) {
      this.chunk[this.fill++] = out[i];
      if (this.fill === this.chunk.length) {
        const pcm = toPcm16(this.chunk);
        this.port.postMessage(pcm.buffer, [pcm.buffer]);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor("saijin-mic", SaijinMic);
