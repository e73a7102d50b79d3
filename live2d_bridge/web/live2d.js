// Live2D mode: pixi.js 6 + pixi-live2d-display 0.4 (cubism4 build) + the Cubism Core the user points to.
// Emotions map to the model's expressions through the persona's map; the mouth values drive ParamMouthOpenY.
// Any failure throws, and the page falls back to the built-in avatar with a visible note.

const LOAD_TIMEOUT_MS = 20000;
const loaded = new Map();

function loadScript(url, isReady) {
  if (isReady()) return Promise.resolve();
  if (loaded.has(url)) return loaded.get(url);
  const promise = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = url;
    script.async = false;
    const timer = setTimeout(() => reject(new Error(`${url} の読み込みが時間切れになりました`)), LOAD_TIMEOUT_MS);
    script.onload = () => {
      clearTimeout(timer);
      isReady() ? resolve() : reject(new Error(`${url} を読み込みましたが、必要なものが見つかりません`));
    };
    script.onerror = () => {
      clearTimeout(timer);
      reject(new Error(`${url} を読み込めませんでした`));
    };
    document.head.appendChild(script);
  });
  loaded.set(url, promise);
  promise.catch(() => loaded.delete(url));
  return promise;
}

function withTimeout(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} が時間切れになりました`)), ms)),
  ]);
}

/** Whether a persona asks for Live2D (both a core script and a model). */
export function wantsLive2D(persona) {
  const l2d = persona && persona.live2d;
  return !!(l2d && l2d.core_script && l2d.model);
}

/** Load the libraries and the persona's model into `container`; resolves to an avatar or throws. */
export async function createLive2DAvatar(container, persona, libs) {
  if (!libs || !libs.pixi || !libs.display) {
    throw new Error("pixi.js / pixi-live2d-display が設定されていません");
  }
  await loadScript(persona.live2d.core_script, () => !!window.Live2DCubismCore);
  await loadScript(libs.pixi, () => !!window.PIXI);
  await loadScript(libs.display, () => !!(window.PIXI && window.PIXI.live2d && window.PIXI.live2d.Live2DModel));
  const PIXI = window.PIXI;

  const host = document.createElement("div");
  host.className = "live2d-host";
  const canvas = document.createElement("canvas");
  canvas.className = "live2d-canvas";
  host.appendChild(canvas);
  container.appendChild(host);

  let app;
  try {
    app = new PIXI.Application({
      view: canvas, backgroundAlpha: 0, antialias: true, autoStart: false,
      resolution: Math.min(window.devicePixelRatio || 1, 2), autoDensity: true, resizeTo: host,
    });
  } catch (err) {
    host.remove();
    throw new Error(`WebGL を使えません (${err.message})`);
  }
  let model;
  try {
    // The page's own animation frame drives the model (renderFrame), so the mouth drawn is the mouth heard.
    model = await withTimeout(PIXI.live2d.Live2DModel.from(persona.live2d.model, { autoInteract: false, autoUpdate: false }),
      LOAD_TIMEOUT_MS, "モデルの読み込み");
  } catch (err) {
    app.destroy(true);
    host.remove();
    throw err instanceof Error ? err : new Error(String(err));
  }
  app.stage.addChild(model);
  return new Live2DAvatar(host, app, model, persona);
}

class Live2DAvatar {
  constructor(host, app, model, persona) {
    this.kind = "live2d";
    this.host = host;
    this.app = app;
    this.model = model;
    this.persona = persona;
    this.mouth = 0;
    this.mouthTarget = 0;
    this.state = "listening";
    this.expression = null;
    this.lastMouthParam = 0;
    const core = model.internalModel.coreModel;
    this.core = core;
    const idx = core.getParameterIndex ? core.getParameterIndex("ParamMouthOpenY") : -1;
    this.mouthRange = [0, 1];
    if (idx >= 0 && core.getParameterMinimumValue) {
      this.mouthRange = [core.getParameterMinimumValue(idx), core.getParameterMaximumValue(idx)];
    }
    this.expressionNames = ((model.internalModel.settings.expressions) || []).map((e) => e.Name || e.name);
    model.internalModel.on("beforeModelUpdate", () => this.beforeUpdate());
    this.layout = () => this.fit();
    window.addEventListener("resize", this.layout);
    this.fit();
    this.setPersona(persona);
  }

  fit() {
    const w = this.host.clientWidth || 600, h = this.host.clientHeight || 600;
    const m = this.model;
    const scale0 = m.scale.x || 1;
    const natW = m.width / scale0, natH = m.height / scale0;
    const userScale = (this.persona.live2d && this.persona.live2d.scale) || 1;
    // Show the upper body: a full-height model would make the face tiny. (persona live2d.scale adjusts.)
    const scale = ((h * 2.1) / natH) * userScale;
    m.scale.set(scale);
    m.x = (w - natW * scale) / 2;
    m.y = h * 0.03;
  }

  beforeUpdate() {
    const core = this.core;
    const [lo, hi] = this.mouthRange;
    const value = lo + (hi - lo) * this.mouth;
    core.setParameterValueById("ParamMouthOpenY", value);
    this.lastMouthParam = core.getParameterValueById("ParamMouthOpenY");
    if (this.state === "sleeping") {
      core.setParameterValueById("ParamEyeLOpen", 0);
      core.setParameterValueById("ParamEyeROpen", 0);
    }
  }

  setPersona(persona) {
    this.persona = persona;
  }

  /** Advance the model to now and draw it (called once per animation frame, after setMouth). */
  renderFrame() {
    const now = performance.now();
    this.model.update(Math.min(100, now - (this.lastFrameAt || now)));
    this.lastFrameAt = now;
    this.app.render();
  }

  setMouth(value) {
    const v = Math.max(0, Math.min(1, Number(value) || 0));
    const now = performance.now();
    const dt = Math.min(0.1, (now - (this.lastMouthAt || now)) / 1000);
    this.lastMouthAt = now;
    // Same feel as the built-in avatar, whatever the frame rate: open fast, close a little slower.
    const rate = v > this.mouth ? 40 : 22;
    this.mouth += (v - this.mouth) * (1 - Math.exp(-dt * rate));
    if (v === 0 && this.mouth < 0.01) this.mouth = 0;
  }

  setState(state) {
    this.state = state;
  }

  /** Map an emotion/tag through the persona's expressions to one of the model's expressions. */
  setExpression(name) {
    const map = (this.persona && this.persona.expressions) || {};
    const mapped = map[name] || map[String(name).toLowerCase()] || name;
    const manager = this.model.internalModel.motionManager.expressionManager;
    if (manager && this.expressionNames.includes(mapped)) {
      this.model.expression(mapped);
      this.expression = mapped;
    } else if (manager) {
      // Neutral, or an emotion this model has no expression for: back to the model's own face.
      manager.currentExpression = manager.defaultExpression;
      manager.resetExpression();
      this.expression = null;
    }
    this.host.dataset.expression = this.expression || "";
    return this.expression;
  }

  /** The name of the expression the model's expression manager shows now (null: the default face). */
  currentExpressionName() {
    const manager = this.model.internalModel.motionManager.expressionManager;
    if (!manager || !manager.currentExpression) return null;
    const index = manager.expressions.indexOf(manager.currentExpression);
    const definition = manager.definitions[index];
    return definition ? (definition.Name || definition.name || null) : null;
  }

  destroy() {
    window.removeEventListener("resize", this.layout);
    try { this.app.destroy(true, { children: true }); } catch (_) { /* already gone */ }
    this.host.remove();
  }
}
