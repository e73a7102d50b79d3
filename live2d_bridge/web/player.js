// Plays the reply's audio with Web Audio, one sentence after another, and says how open the mouth is
// at the moment the listener hears it (mouth values: one per 20 ms of the sentence).
// Without a WAV (the server plays the sound itself) the mouth still follows the values on the page's clock.

const MOUTH_STEP_S = 0.02;

function base64ToBytes(text) {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function rms(buffer) {
  const data = buffer.getChannelData(0);
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
  return data.length ? Math.min(1, Math.sqrt(sum / data.length)) : 0;
}

export class Player {
  /**
   * onStart(item): a sentence began to play; onEnd(item, playedS, wasCut): it finished or was cut.
   * onGate(isBlocked): the browser blocks sound until the user clicks (autoplay policy).
   */
  constructor({ onStart = () => {}, onEnd = () => {}, onGate = () => {} } = {}) {
    this.onStart = onStart;
    this.onEnd = onEnd;
    this.onGate = onGate;
    this.ctx = null;
    this.items = [];          // scheduled sentences, in order
    this.cancelled = new Set(); // turns that were interrupted
    this.seen = new Set();      // turns whose audio arrived
    this.chain = Promise.resolve();
    this.audioEnd = 0;        // audio-clock time when the last scheduled sentence ends
    this.pageEnd = 0;         // page-clock time (seconds) for sentences without a WAV
    this.volume = 1;
  }

  context() {
    if (!this.ctx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      this.ctx = new Ctx({ latencyHint: "interactive" });
      this.gain = this.ctx.createGain();
      this.gain.gain.value = this.volume;
      this.gain.connect(this.ctx.destination);
      this.ctx.onstatechange = () => this.onGate(this.ctx.state === "suspended");
    }
    if (this.ctx.state === "suspended") {
      this.ctx.resume().catch(() => {});
      setTimeout(() => this.onGate(this.ctx.state === "suspended"), 300);
    }
    return this.ctx;
  }

  /** Whether sound can play now (the context runs, or starts running within a moment). */
  async _canPlay() {
    const ctx = this.context();
    if (ctx.state === "running") return true;
    await Promise.race([ctx.resume().catch(() => {}), new Promise((r) => setTimeout(r, 150))]);
    return ctx.state === "running";
  }

  /** Resume sound after a user gesture. */
  unlock() {
    const ctx = this.context();
    return ctx.resume().then(() => this.onGate(ctx.state === "suspended")).catch(() => {});
  }

  setVolume(value) {
    this.volume = value;
    if (this.gain) this.gain.gain.setTargetAtTime(value, this.ctx.currentTime, 0.3);
  }

  /** The audio clock as heard at the speaker (output latency taken out). */
  heardTime() {
    const ctx = this.ctx;
    if (!ctx) return 0;
    if (ctx.getOutputTimestamp) {
      const ts = ctx.getOutputTimestamp();
      if (ts && ts.contextTime > 0 && ts.performanceTime > 0) {
        return ts.contextTime + Math.max(0, performance.now() - ts.performanceTime) / 1000;
      }
    }
    return Math.max(0, ctx.currentTime - (ctx.outputLatency || ctx.baseLatency || 0));
  }

  pageTime() {
    return performance.now() / 1000;
  }

  /** Queue one `audio` message; sentences play in the order they arrive. */
  enqueue(msg) {
    if (this.cancelled.has(msg.turn_id)) return this.chain;
    this.seen.add(msg.turn_id);
    if (this.seen.size > 100) this.seen.delete(this.seen.values().next().value);
    this.chain = this.chain.then(() => this._schedule(msg)).catch((err) => console.warn("audio:", err));
    return this.chain;
  }

  async _schedule(msg) {
    if (this.cancelled.has(msg.turn_id)) return;
    const mouth = Array.isArray(msg.mouth) ? msg.mouth : [];
    const item = {
      turn: msg.turn_id, index: msg.sentence_index, text: msg.text || "", mouth,
      source: null, clock: "page", start: 0, duration: mouth.length * MOUTH_STEP_S,
      started: false, done: false, level: 0, timers: [],
    };
    const isPlayable = !!msg.wav && (await this._canPlay());
    if (msg.wav && !isPlayable) {
      // The browser blocks sound until the user clicks (the sound gate shows): the mouth still moves, silently.
      this.onGate(true);
    }
    if (this.cancelled.has(msg.turn_id)) return;
    if (isPlayable) {
      const ctx = this.context();
      const bytes = base64ToBytes(msg.wav);
      const buffer = await ctx.decodeAudioData(bytes.buffer);
      if (this.cancelled.has(msg.turn_id)) return;
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(this.gain);
      const start = Math.max(ctx.currentTime + 0.04, this.audioEnd);
      source.start(start);
      Object.assign(item, { source, clock: "audio", start, duration: buffer.duration, level: rms(buffer) });
      this.audioEnd = start + buffer.duration;
      source.onended = () => this._finish(item, false);
      const lead = Math.max(0, start - ctx.currentTime + (ctx.outputLatency || 0));
      item.timers.push(setTimeout(() => this._begin(item), lead * 1000));
    } else {
      const start = Math.max(this.pageTime() + 0.02, this.pageEnd);
      item.start = start;
      this.pageEnd = start + item.duration;
      item.timers.push(setTimeout(() => this._begin(item), (start - this.pageTime()) * 1000));
      item.timers.push(setTimeout(() => this._finish(item, false), (start + item.duration - this.pageTime()) * 1000));
    }
    this.items.push(item);
  }

  _begin(item) {
    if (item.started || item.done) return;
    item.started = true;
    this.onStart(item);
  }

  _finish(item, wasCut) {
    if (item.done) return;
    const played = item.started ? Math.max(0, Math.min(item.duration, this._now(item) - item.start)) : 0;
    if (!item.started && !wasCut) {
      item.started = true;
      this.onStart(item);
    }
    item.done = true;
    item.timers.forEach(clearTimeout);
    this.items = this.items.filter((i) => i !== item);
    this.onEnd(item, wasCut ? played : item.duration, wasCut);
  }

  _now(item) {
    return item.clock === "audio" ? this.heardTime() : this.pageTime();
  }

  /** Stop everything of one turn (it was interrupted); later audio of that turn is ignored. */
  stopTurn(turnId) {
    this.cancelled.add(turnId);
    for (const item of [...this.items]) if (item.turn === turnId) this._cut(item);
    this._resetEnds();
  }

  /** The turns with sound queued or playing now. */
  turns() {
    return [...new Set(this.items.map((i) => i.turn))];
  }

  /** Whether any sound of this turn reached the player. */
  hasTurn(turnId) {
    return this.seen.has(turnId);
  }

  /** Stop all sound now (the interrupt button). */
  stopAll() {
    for (const item of [...this.items]) {
      this.cancelled.add(item.turn);
      this._cut(item);
    }
    this._resetEnds();
  }

  _cut(item) {
    if (item.source) {
      item.source.onended = null;
      try { item.source.stop(); } catch (_) { /* not started yet */ }
    }
    this._finish(item, true);
  }

  _resetEnds() {
    this.audioEnd = this.ctx ? this.ctx.currentTime : 0;
    this.pageEnd = this.pageTime();
  }

  /** The sentence being heard now, and how far into it (seconds), or null. */
  current() {
    for (const item of this.items) {
      const t = this._now(item) - item.start;
      if (t >= 0 && t < item.duration) return { item, t };
    }
    return null;
  }

  get isPlaying() {
    return this.current() !== null;
  }

  /** Mouth opening 0..1 now: the 20 ms value under the playhead, interpolated; 0 when nothing plays. */
  mouthNow() {
    const cur = this.current();
    if (!cur) return 0;
    const { item, t } = cur;
    const pos = t / MOUTH_STEP_S;
    const i = Math.floor(pos);
    const a = item.mouth[i] ?? 0, b = item.mouth[i + 1] ?? a;
    return Math.max(0, Math.min(1, a + (b - a) * (pos - i)));
  }
}
