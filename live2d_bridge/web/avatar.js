// The built-in avatar: an SVG face in the persona's colour, an expression for each canonical emotion,
// a mouth that follows the mouth values, idle blinking, and the listening/thinking/speaking/sleeping states.
// It needs nothing proprietary and is what every persona without a Live2D model shows.
//
// It costs almost nothing when idle: it draws only while something moves (a face easing into its shape,
// the mouth, a blink) at most MAX_FPS, and writes only the attributes whose value changed; breathing is a
// CSS transform of the whole drawing (a compositor layer), set a few times a second; nothing runs while the
// tab is hidden.

const SVG = "http://www.w3.org/2000/svg";

export const CANONICAL = ["neutral", "happy", "sad", "angry", "fearful", "surprised", "disgusted", "calm"];

// Expression tags and common names -> the faces this avatar can make.
const ALIASES = {
  neutral: "neutral", happy: "happy", joy: "happy", fun: "happy", smile: "happy", glad: "happy",
  sad: "sad", sorrow: "sad", angry: "angry", anger: "angry", fearful: "fearful", fear: "fearful",
  scared: "fearful", worried: "fearful", surprised: "surprised", surprise: "surprised",
  disgusted: "disgusted", disgust: "disgusted", calm: "calm", relaxed: "calm", relief: "calm",
  thinking: "thinking", think: "thinking", shy: "shy", embarrassed: "shy",
  concerned: "concerned", concern: "concerned", caring: "concerned", gentle: "gentle", kind: "gentle",
  soft: "gentle", tired: "gentle", excited: "happy",
};

// Target values per face: brow lift/tilt, eye openness and shape, mouth curve, blush and extras.
const FACES = {
  neutral:   { browY: 0,   browTilt: 0,   eyeOpen: 1.0,  eyeSmile: 0, mouthCurve: 4,   mouthBase: 0,    mouthWidth: 15, blush: 0.25, look: [0, 0] },
  happy:     { browY: -4,  browTilt: -3,  eyeOpen: 1.0,  eyeSmile: 1, mouthCurve: 12,  mouthBase: 0.15, mouthWidth: 19, blush: 0.65, look: [0, 0] },
  sad:       { browY: -2,  browTilt: 16,  eyeOpen: 0.78, eyeSmile: 0, mouthCurve: -7,  mouthBase: 0,    mouthWidth: 13, blush: 0.1,  look: [0, 3], tear: 1 },
  angry:     { browY: 3,   browTilt: -18, eyeOpen: 0.82, eyeSmile: 0, mouthCurve: -6,  mouthBase: 0,    mouthWidth: 14, blush: 0.15, look: [0, 0], mark: 1 },
  fearful:   { browY: -6,  browTilt: 14,  eyeOpen: 1.15, eyeSmile: 0, mouthCurve: -4,  mouthBase: 0.1,  mouthWidth: 11, blush: 0,    look: [-2, 1], sweat: 1 },
  surprised: { browY: -11, browTilt: 0,   eyeOpen: 1.25, eyeSmile: 0, mouthCurve: 0,   mouthBase: 0.45, mouthWidth: 9,  blush: 0.2,  look: [0, 0] },
  disgusted: { browY: 2,   browTilt: -8,  eyeOpen: 0.68, eyeSmile: 0, mouthCurve: -8,  mouthBase: 0,    mouthWidth: 14, blush: 0,    look: [3, 0] },
  calm:      { browY: -1,  browTilt: 4,   eyeOpen: 0.55, eyeSmile: 0, mouthCurve: 6,   mouthBase: 0,    mouthWidth: 14, blush: 0.35, look: [0, 1] },
  thinking:  { browY: -3,  browTilt: 6,   eyeOpen: 0.9,  eyeSmile: 0, mouthCurve: -1,  mouthBase: 0,    mouthWidth: 9,  blush: 0.15, look: [5, -4] },
  concerned: { browY: -3,  browTilt: 12,  eyeOpen: 0.92, eyeSmile: 0, mouthCurve: 1,   mouthBase: 0,    mouthWidth: 12, blush: 0.2,  look: [0, 1] },
  gentle:    { browY: -1,  browTilt: 7,   eyeOpen: 0.72, eyeSmile: 0, mouthCurve: 9,   mouthBase: 0,    mouthWidth: 13, blush: 0.45, look: [0, 2] },
  shy:       { browY: -2,  browTilt: 10,  eyeOpen: 0.8,  eyeSmile: 0, mouthCurve: 7,   mouthBase: 0,    mouthWidth: 10, blush: 1.0,  look: [-3, 3] },
};

/** The face this avatar shows for an expression name (a canonical emotion, a tag, or a mapped name). */
export function resolveFace(name, persona) {
  const key = String(name || "").toLowerCase();
  if (ALIASES[key]) return ALIASES[key];
  // A name from the persona's map (e.g. a Live2D expression id): use the emotion that maps to it.
  const map = (persona && persona.expressions) || {};
  for (const [emotion, mapped] of Object.entries(map)) {
    if (String(mapped).toLowerCase() === key && ALIASES[emotion.toLowerCase()]) return ALIASES[emotion.toLowerCase()];
  }
  return "neutral";
}

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function mix(hex, other, t) {
  const a = hexToRgb(hex), b = hexToRgb(other);
  const c = a.map((v, i) => Math.round(v + (b[i] - v) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

const lerp = (a, b, t) => a + (b - a) * t;

// Breathing: one step every BREATH_STEP_MS (a few a second is enough for a slow sway), a period per state.
const BREATH_STEP_MS = 200;
const BREATH = { normal: [5200, 1.6], bedtime: [8000, 2.2], sleeping: [10000, 3.2] };  // period ms, px
// Drawing the SVG is the page's main cost on a software renderer: mouth and faces need no more than this.
const MAX_FPS = 30;
// A face counts as settled when every value is this close to its goal.
const SETTLED = 0.004;

const HAIR_LONG = "M92 210 C 78 110, 150 52, 200 52 C 258 52, 325 104, 310 214 C 318 300, 300 352, 286 372 L 114 372 C 98 350, 82 300, 92 210 Z";
const HAIR_SHORT = "M92 210 C 78 110, 150 52, 200 52 C 258 52, 325 104, 310 214 C 314 262, 306 300, 294 322 L 106 322 C 94 300, 86 262, 92 210 Z";
// Each persona gets one of these hairstyles (chosen from its id, so it never changes).
const STYLES = ["bob", "long", "twintails"];

function styleFor(persona) {
  const id = (persona && persona.id) || "";
  let sum = 0;
  for (const ch of id) sum += ch.codePointAt(0);
  return STYLES[sum % STYLES.length];
}

export class BuiltinAvatar {
  constructor(container, persona) {
    this.kind = "builtin";
    this.container = container;
    this.persona = persona;
    this.face = "neutral";
    this.state = "listening";
    this.mouthTarget = 0;
    this.mouth = 0;
    this.cur = { ...FACES.neutral, tear: 0, mark: 0, sweat: 0, sleep: 0 };
    this.mode = "normal";
    this.blinkUntil = 0;
    this.last = performance.now();
    this.frame = 0;
    this.blinkTimer = 0;
    this.breathTimer = 0;
    this.written = new Map();   // element -> {attribute: value} last written
    this.build();
    this.setPersona(persona);
    this.onVisibility = () => this.resume();
    document.addEventListener("visibilitychange", this.onVisibility);
    this.resume();
  }

  /** Start (or restart after the tab was hidden) the blink and breathing clocks and draw once. */
  resume() {
    clearTimeout(this.blinkTimer);
    clearInterval(this.breathTimer);
    this.blinkTimer = this.breathTimer = 0;
    if (document.hidden) return;
    this.scheduleBlink(1800);
    this.breathTimer = setInterval(() => this.breathe(), BREATH_STEP_MS);
    this.breathe();
    this.wake();
  }

  /** Draw on the next animation frame (once; the frame keeps itself going while something moves). */
  wake() {
    if (!this.frame && !document.hidden && this.svg.isConnected) {
      this.last = performance.now();
      this.frame = requestAnimationFrame((t) => this.tick(t));
    }
  }

  scheduleBlink(delayMs) {
    clearTimeout(this.blinkTimer);
    this.blinkTimer = setTimeout(() => {
      if (document.hidden) return;
      this.blinkUntil = performance.now() + 130;
      this.wake();
      this.scheduleBlink(2000 + Math.random() * 4000);
    }, delayMs);
  }

  breathe() {
    if (document.hidden) return;
    const [period, depth] = BREATH[this.state === "sleeping" ? "sleeping" : this.mode] || BREATH.normal;
    const y = (Math.sin((performance.now() / period) * 2 * Math.PI) * depth).toFixed(1);
    if (y !== this.breathY) {
      // The whole drawing is its own compositor layer (will-change in style.css): moving it costs no
      // redraw of the SVG, only a composite.
      this.breathY = y;
      this.svg.style.transform = `translateY(${y}px)`;
    }
  }

  /** Set an attribute only when its value changes (each write costs a style and paint pass). */
  put(node, name, value) {
    let seen = this.written.get(node);
    if (!seen) this.written.set(node, (seen = {}));
    const text = String(value);
    if (seen[name] === text) return;
    seen[name] = text;
    node.setAttribute(name, text);
  }

  show(node, isShown) {
    const value = isShown ? "" : "none";
    if (node.style.display !== value) node.style.display = value;
  }

  build() {
    const svg = el("svg", { viewBox: "0 0 400 440", class: "builtin-avatar", role: "img" });
    this.svg = svg;
    const defs = el("defs", {}, svg);
    const glow = el("radialGradient", { id: "av-glow", cx: "50%", cy: "45%", r: "55%" }, defs);
    this.glowStop1 = el("stop", { offset: "0%", "stop-opacity": "0.55" }, glow);
    this.glowStop2 = el("stop", { offset: "100%", "stop-opacity": "0" }, glow);
    const skin = el("linearGradient", { id: "av-skin", x1: "0", y1: "0", x2: "0", y2: "1" }, defs);
    el("stop", { offset: "0%", "stop-color": "#fff1e8" }, skin);
    el("stop", { offset: "100%", "stop-color": "#f8d9c8" }, skin);
    const hairGrad = el("linearGradient", { id: "av-hair", x1: "0", y1: "0", x2: "0", y2: "1" }, defs);
    this.hairStop1 = el("stop", { offset: "0%" }, hairGrad);
    this.hairStop2 = el("stop", { offset: "100%" }, hairGrad);

    this.glow = el("circle", { cx: 200, cy: 215, r: 195, fill: "url(#av-glow)", class: "av-glow" }, svg);
    this.ring = el("circle", { cx: 200, cy: 205, r: 168, fill: "none", "stroke-width": 2, class: "av-ring" }, svg);

    // The pose (a sleeping tilt, in CSS) holds the body, which breathes.
    this.pose = el("g", { class: "av-pose" }, svg);
    const body = el("g", { class: "av-body" }, this.pose);
    this.body = body;
    // Twin tails (one of the hairstyles), behind everything else.
    this.tails = el("g", {}, body);
    el("path", { d: "M122 150 C 62 160, 36 262, 58 392 C 70 352, 92 300, 104 262 C 110 230, 118 196, 126 176 Z", fill: "url(#av-hair)" }, this.tails);
    el("path", { d: "M278 150 C 338 160, 364 262, 342 392 C 330 352, 308 300, 296 262 C 290 230, 282 196, 274 176 Z", fill: "url(#av-hair)" }, this.tails);
    // Back hair, shoulders, neck.
    this.backHair = el("path", { d: HAIR_LONG, fill: "url(#av-hair)" }, body);
    this.shoulders = el("path", { d: "M96 440 C 100 388, 142 362, 200 362 C 258 362, 300 388, 304 440 Z" }, body);
    el("path", { d: "M176 330 L 176 372 C 186 382, 214 382, 224 372 L 224 330 Z", fill: "#f3cfbd" }, body);
    this.collar = el("path", { d: "M150 372 C 170 396, 230 396, 250 372 L 236 366 C 220 384, 180 384, 164 366 Z", fill: "#ffffff", opacity: "0.85" }, body);
    // Face.
    this.head = el("g", { class: "av-head" }, body);
    el("ellipse", { cx: 200, cy: 220, rx: 98, ry: 112, fill: "url(#av-skin)" }, this.head);
    // Cheeks.
    this.cheekL = el("ellipse", { cx: 142, cy: 262, rx: 20, ry: 11, fill: "#ff8fa3" }, this.head);
    this.cheekR = el("ellipse", { cx: 258, cy: 262, rx: 20, ry: 11, fill: "#ff8fa3" }, this.head);
    // Eyes: an open eye (iris, pupil, highlights) and a closed/smiling lid line, per side.
    this.eyes = [-1, 1].map((side) => {
      const cx = 200 + side * 40, cy = 228;
      const g = el("g", { class: "av-eye" }, this.head);
      const open = el("g", {}, g);
      const white = el("ellipse", { cx, cy, rx: 19, ry: 23, fill: "#ffffff" }, open);
      const iris = el("ellipse", { cx, cy: cy + 2, rx: 14, ry: 18, class: "av-iris" }, open);
      const pupil = el("ellipse", { cx, cy: cy + 3, rx: 7, ry: 9, fill: "#1b1d2b" }, open);
      const hl1 = el("circle", { cx: cx + 5, cy: cy - 6, r: 5, fill: "#ffffff", opacity: "0.95" }, open);
      const hl2 = el("circle", { cx: cx - 5, cy: cy + 9, r: 2.4, fill: "#ffffff", opacity: "0.8" }, open);
      const lash = el("path", { fill: "none", stroke: "#2a2233", "stroke-width": 4, "stroke-linecap": "round" }, g);
      const closed = el("path", { fill: "none", stroke: "#2a2233", "stroke-width": 4, "stroke-linecap": "round" }, g);
      return { side, cx, cy, g, open, white, iris, pupil, hl1, hl2, lash, closed };
    });
    // Mouth: the opening (dark) and the lip line.
    this.mouthShape = el("path", { fill: "#8e3b4f", stroke: "#6d2a3b", "stroke-width": 2.5, "stroke-linejoin": "round", class: "av-mouth" }, this.head);
    this.tongue = el("ellipse", { cx: 200, cy: 300, rx: 8, ry: 4, fill: "#e4707f" }, this.head);
    // Front hair (bangs) on top of the face.
    this.sideLocks = [
      el("path", { d: "M106 206 C 96 258, 102 304, 118 348 C 118 306, 118 262, 122 222 Z", fill: "url(#av-hair)" }, body),
      el("path", { d: "M294 206 C 304 258, 298 304, 282 348 C 282 306, 282 262, 278 222 Z", fill: "url(#av-hair)" }, body),
    ];
    this.bangs = el("path", { d: "M100 228 C 92 140, 140 80, 200 80 C 260 80, 308 140, 300 228 Q 292 190, 274 170 Q 272 194, 260 208 Q 252 180, 238 162 Q 234 188, 216 202 Q 208 176, 198 160 Q 188 186, 166 198 Q 166 174, 160 164 Q 144 186, 130 208 Q 126 186, 128 172 Q 110 198, 100 228 Z", fill: "url(#av-hair)" }, body);
    this.ties = [el("circle", { cx: 104, cy: 164, r: 8 }, body), el("circle", { cx: 296, cy: 164, r: 8 }, body)];
    // Brows sit over the fringe, as drawn characters' brows do, so every expression shows.
    this.brows = [-1, 1].map(() => el("path", { fill: "none", stroke: "#3d2f3f", "stroke-width": 4.5, "stroke-linecap": "round", opacity: "0.92", class: "av-brow" }, body));
    this.hairShine = el("path", { d: "M142 118 C 166 102, 214 98, 246 110", fill: "none", stroke: "#ffffff", "stroke-width": 5, "stroke-linecap": "round", opacity: "0.25" }, body);
    // Extras: tear, anger mark, sweat drop.
    this.tear = el("path", { d: "M236 262 C 232 274, 230 280, 234 285 C 238 289, 244 286, 243 279 C 242 274, 239 268, 236 262 Z", fill: "#8fd3ff", opacity: 0 }, this.head);
    this.mark = el("path", { d: "M262 150 l 8 8 m 0 -8 l -8 8 M 276 142 l 10 10 m 0 -10 l -10 10", stroke: "#ff5d73", "stroke-width": 4, "stroke-linecap": "round", opacity: 0 }, svg);
    this.sweat = el("path", { d: "M296 176 C 290 190, 288 198, 294 204 C 300 209, 308 203, 306 194 C 305 188, 300 182, 296 176 Z", fill: "#a5dcff", opacity: 0 }, svg);
    this.container.appendChild(svg);
  }

  setPersona(persona) {
    this.persona = persona;
    const color = (persona && persona.color) || "#7aa2f7";
    this.glowStop1.setAttribute("stop-color", color);
    this.glowStop2.setAttribute("stop-color", color);
    this.ring.setAttribute("stroke", color);
    this.hairStop1.setAttribute("stop-color", mix(color, "#1a1b2e", 0.35));
    this.hairStop2.setAttribute("stop-color", mix(color, "#0d0e1a", 0.62));
    this.shoulders.setAttribute("fill", mix(color, "#20223a", 0.5));
    for (const eye of this.eyes) eye.iris.setAttribute("fill", mix(color, "#1a1b2e", 0.25));
    this.style = styleFor(persona);
    this.svg.dataset.style = this.style;
    this.backHair.setAttribute("d", this.style === "long" ? HAIR_LONG : HAIR_SHORT);
    this.tails.style.display = this.style === "twintails" ? "" : "none";
    for (const tie of this.ties) tie.style.display = this.style === "twintails" ? "" : "none";
    for (const lock of this.sideLocks) lock.style.display = this.style === "bob" ? "none" : "";
    for (const tie of this.ties) tie.setAttribute("fill", mix(color, "#ffffff", 0.55));
    this.wake();
  }

  setExpression(name) {
    this.face = resolveFace(name, this.persona);
    this.svg.dataset.expression = this.face;
    this.wake();
    return this.face;
  }

  setState(state) {
    this.state = state;
    this.svg.dataset.state = state;
    this.wake();
  }

  /** Normal or bedtime: bedtime breathes slower and deeper. */
  setMode(mode) {
    this.mode = mode === "bedtime" ? "bedtime" : "normal";
    this.svg.dataset.mode = this.mode;
  }

  setMouth(value) {
    this.mouthTarget = Math.max(0, Math.min(1, Number(value) || 0));
    if (this.mouthTarget !== this.mouth) this.wake();
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    clearTimeout(this.blinkTimer);
    clearInterval(this.breathTimer);
    document.removeEventListener("visibilitychange", this.onVisibility);
    this.svg.remove();
  }

  tick(time) {
    this.frame = 0;
    if (time - this.last < 1000 / MAX_FPS - 4) {
      this.frame = requestAnimationFrame((t) => this.tick(t));
      return;
    }
    const dt = Math.min(0.1, Math.max(0, (time - this.last) / 1000));
    this.last = time;
    const target = { tear: 0, mark: 0, sweat: 0, ...FACES[this.face] || FACES.neutral };
    const sleeping = this.state === "sleeping";
    const thinking = this.state === "thinking" && this.face === "neutral";
    const base = thinking ? FACES.thinking : target;
    const k = 1 - Math.exp(-dt * 9);
    let isSettled = true;
    for (const key of Object.keys(this.cur)) {
      if (key === "look") continue;
      const goal = key === "sleep" ? (sleeping ? 1 : 0) : (base[key] ?? target[key] ?? 0);
      // Brows, mouth width and look are in SVG units: "close" scales with the value's range.
      const close = Math.abs(goal) > 2 ? SETTLED * 10 : SETTLED;
      this.cur[key] = Math.abs(this.cur[key] - goal) < close ? goal : lerp(this.cur[key], goal, k);
      if (this.cur[key] !== goal) isSettled = false;
    }
    const look = this.cur.look.map((v, i) => (Math.abs(v - base.look[i]) < 0.05 ? base.look[i] : lerp(v, base.look[i], k)));
    if (look[0] !== base.look[0] || look[1] !== base.look[1]) isSettled = false;
    this.cur.look = look;
    // Mouth: open fast, close a little slower (speech looks natural that way).
    const m = this.mouthTarget;
    this.mouth = m > this.mouth ? lerp(this.mouth, m, 1 - Math.exp(-dt * 40)) : lerp(this.mouth, m, 1 - Math.exp(-dt * 22));
    if (m === 0 && this.mouth < 0.01) this.mouth = 0;
    if (Math.abs(this.mouth - m) < 0.002) this.mouth = m;
    // Blinking (every 2-6 s, 130 ms; scheduleBlink wakes the frame for it).
    const isBlinking = performance.now() < this.blinkUntil;
    this.render(isBlinking ? 1 : 0);
    const mouthText = this.mouth.toFixed(3);
    if (this.svg.dataset.mouth !== mouthText) this.svg.dataset.mouth = mouthText;
    // Keep drawing only while something moves; a blink's last frame opens the eyes again.
    if (!isSettled || this.mouth !== m || m > 0 || isBlinking || this.wasBlinking) this.wake();
    this.wasBlinking = isBlinking;
  }

  render(blink) {
    const c = this.cur;
    const sleep = c.sleep;
    // Eyes.
    // Smiling eyes are drawn as arcs (^ ^) rather than squashed ovals.
    const isSmiling = c.eyeSmile > 0.5 && sleep < 0.5;
    const open = isSmiling ? 0 : Math.max(0, c.eyeOpen * (1 - sleep) * (1 - blink));
    for (const eye of this.eyes) {
      const { cx, cy } = eye;
      const s = Math.min(open, 1.3);
      const ry = 23 * s;
      this.put(eye.open, "transform", `translate(0 ${(cy * (1 - s)).toFixed(2)}) scale(1 ${s.toFixed(3)})`);
      this.show(eye.open, open >= 0.06);
      const lx = c.look[0], ly = c.look[1];
      const scaleWide = open > 1.05 ? 0.8 : 1;
      this.put(eye.pupil, "cx", cx + lx);
      this.put(eye.pupil, "cy", cy + 3 + ly);
      this.put(eye.pupil, "rx", 7 * scaleWide);
      this.put(eye.pupil, "ry", 9 * scaleWide);
      this.put(eye.iris, "cx", cx + lx * 0.7);
      this.put(eye.iris, "cy", cy + 2 + ly * 0.7);
      this.put(eye.hl1, "cx", cx + 5 + lx * 0.5);
      this.put(eye.hl1, "cy", cy - 6 + ly * 0.5);
      // Upper lash line follows the lid.
      const top = cy - ry + 2;
      this.put(eye.lash, "d", open < 0.06 ? "" : `M${cx - 21} ${cy - ry * 0.55 + 2} Q ${cx} ${top - 6} ${cx + 21} ${cy - ry * 0.55 + 2}`);
      // Closed eyes: a gentle downward arc when sleeping or blinking, an upward arc (^ ^) when smiling.
      let closed = "";
      if (open < 0.06) {
        closed = isSmiling
          ? `M${cx - 17} ${cy + 6} Q ${cx} ${cy - 12} ${cx + 17} ${cy + 6}`
          : `M${cx - 17} ${cy + 2} Q ${cx} ${cy + 12} ${cx + 17} ${cy + 2}`;
      }
      this.put(eye.closed, "d", closed);
    }
    // Brows: lift and tilt (positive tilt raises the inner ends: worry; negative lowers them: anger).
    this.brows.forEach((brow, i) => {
      const side = i === 0 ? -1 : 1;
      const cx = 200 + side * 42, y = 186 + c.browY * (1 - sleep * 0.5) + sleep * 4;
      const inner = cx - side * 18, outer = cx + side * 18;
      const tilt = c.browTilt * (1 - sleep);
      const yi = y - tilt * 0.5, yo = y + tilt * 0.3;
      this.put(brow, "d", `M${inner} ${yi.toFixed(1)} Q ${cx} ${(Math.min(yi, yo) - 6).toFixed(1)} ${outer} ${yo.toFixed(1)}`);
    });
    // Mouth: width, smile curve, opening from the mouth values (plus the face's own base opening).
    const openAmt = Math.min(1, this.mouth + c.mouthBase * (1 - sleep));
    const w = c.mouthWidth * (1 - openAmt * 0.25) + openAmt * 2;
    const y = 296;
    const curve = c.mouthCurve * (1 - sleep * 0.6);
    const h = 1.5 + openAmt * 26;
    const upperY = y - curve * 0.35;
    const d = `M${200 - w} ${upperY.toFixed(1)} Q 200 ${(y + curve * 0.45 - h * 0.15).toFixed(1)} ${200 + w} ${upperY.toFixed(1)} ` +
      `Q 200 ${(y + curve * 0.6 + h).toFixed(1)} ${200 - w} ${upperY.toFixed(1)} Z`;
    this.put(this.mouthShape, "d", d);
    this.put(this.tongue, "cy", (y + curve * 0.3 + h * 0.62).toFixed(1));
    this.put(this.tongue, "rx", (w * 0.5).toFixed(1));
    this.put(this.tongue, "ry", (Math.max(0, h - 8) * 0.22).toFixed(1));
    this.show(this.tongue, h > 12);
    // Cheeks and extras.
    for (const cheek of [this.cheekL, this.cheekR]) this.put(cheek, "opacity", (0.12 + c.blush * 0.5).toFixed(3));
    this.put(this.tear, "opacity", (c.tear * (1 - sleep)).toFixed(3));
    this.put(this.mark, "opacity", (c.mark * (1 - sleep)).toFixed(3));
    this.put(this.sweat, "opacity", (c.sweat * (1 - sleep)).toFixed(3));
  }
}
