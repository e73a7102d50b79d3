// The microphone: getUserMedia (echo cancellation, noise suppression), downsampled to 16 kHz PCM16 in an
// AudioWorklet (ScriptProcessor where worklets are missing), handed out in 40 ms chunks.
import { Downsampler, toPcm16 } from "./resample.js";

const CHUNK = 640; // 40 ms at 16 kHz

export class Microphone {
  /** onChunk(Int16Array) for each 40 ms; onLevel(0..1) for the meter. */
  constructor({ onChunk, onLevel = () => {} }) {
    this.onChunk = onChunk;
    this.onLevel = onLevel;
    this.ctx = null;
    this.stream = null;
    this.node = null;
    this.isOpen = false;
  }

  static isSupported() {
    return !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.isSecureContext);
  }

  async start() {
    if (this.isOpen) return;
    if (!Microphone.isSupported()) {
      throw new Error("マイクは https か localhost で開いたページでだけ使えます");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    const Ctx = window.AudioContext || window.webkitAudioContext;
    this.ctx = new Ctx({ latencyHint: "interactive" });
    await this.ctx.resume().catch(() => {});
    const src = this.ctx.createMediaStreamSource(this.stream);
    if (this.ctx.audioWorklet) {
      await this.ctx.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
      this.node = new AudioWorkletNode(this.ctx, "saijin-mic", {
        numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: "explicit",
        processorOptions: { chunk: CHUNK },
      });
      this.node.port.onmessage = (e) => this._emit(new Int16Array(e.data));
      src.connect(this.node);
    } else {
      const down = new Downsampler(this.ctx.sampleRate, 16000);
      let pending = new Float32Array(0);
      this.node = this.ctx.createScriptProcessor(2048, 1, 1);
      this.node.onaudioprocess = (e) => {
        const out = down.process(e.inputBuffer.getChannelData(0));
        const joined = new Float32Array(pending.length + out.length);
        joined.set(pending, 0);
        joined.set(out, pending.length);
        let at = 0;
        for (; at + CHUNK <= joined.length; at += CHUNK) this._emit(toPcm16(joined.subarray(at, at + CHUNK)));
        pending = joined.slice(at);
      };
      src.connect(this.node);
      this.node.connect(this.ctx.destination);
    }
    this.isOpen = true;
  }

  _emit(pcm) {
    let sum = 0;
    for (let i = 0; i < pcm.length; i++) sum += (pcm[i] / 32768) ** 2;
    this.onLevel(Math.min(1, Math.sqrt(sum / pcm.length) * 4));
    this.onChunk(pcm);
  }

  async stop() {
    if (!this.isOpen) return;
    this.isOpen = false;
    if (this.node) this.node.disconnect();
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) await this.ctx.close().catch(() => {});
    this.node = this.stream = this.ctx = null;
    this.onLevel(0);
  }
}

/** PCM16 samples -> base64 of their little-endian bytes. */
export function pcmToBase64(pcm) {
  const bytes = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}
