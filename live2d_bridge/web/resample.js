// Downsampling microphone audio to 16 kHz: a windowed-sinc low-pass, then picking every step-th sample
// (fractional steps round to the nearest input sample). Used by the AudioWorklet and its fallback.

export class Downsampler {
  constructor(inRate, outRate = 16000, taps = 33) {
    this.step = inRate / outRate;
    this.passthrough = Math.abs(this.step - 1) < 1e-6;
    const half = (taps - 1) / 2;
    this.half = half;
    const cutoff = (0.45 * outRate) / inRate; // cycles per input sample, a little under the new Nyquist
    const h = new Float32Array(taps);
    let sum = 0;
    for (let n = 0; n < taps; n++) {
      const x = n - half;
      const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
      const window = 0.54 - 0.46 * Math.cos((2 * Math.PI * n) / (taps - 1));
      h[n] = sinc * window;
      sum += h[n];
    }
    for (let n = 0; n < taps; n++) h[n] /= sum;
    this.h = h;
    this.buf = new Float32Array(0); // input not yet consumed, starting `half` samples before `pos`
    this.pos = half;                // where the next output sample sits, in buf coordinates
  }

  /** Feed input samples (Float32Array at inRate); returns the output samples (Float32Array at outRate). */
  process(input) {
    if (this.passthrough) return Float32Array.from(input);
    const buf = new Float32Array(this.buf.length + input.length);
    buf.set(this.buf, 0);
    buf.set(input, this.buf.length);
    const out = [];
    const h = this.h, half = this.half;
    while (Math.round(this.pos) + half < buf.length) {
      const c = Math.round(this.pos);
      let acc = 0;
      for (let k = 0; k < h.length; k++) acc += h[k] * buf[c - half + k];
      out.push(acc);
      this.pos += this.step;
    }
    // Keep what the next outputs still need.
    const keepFrom = Math.max(0, Math.round(this.pos) - half);
    this.buf = buf.slice(keepFrom);
    this.pos -= keepFrom;
    return Float32Array.from(out);
  }
}

/** Float samples -> little-endian PCM16 bytes. */
export function toPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
  }
  return out;
}
