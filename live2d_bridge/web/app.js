// The Saijin page: connects to the bridge's WebSocket (reconnecting when it drops), shows the avatar,
// subtitles of both sides, the user's detected emotion, and sends text, microphone audio, interrupts,
// persona and mode choices. window.saijin holds the page's state (handy for debugging and for tests).
import { BuiltinAvatar, resolveFace } from "./avatar.js";
import { createLive2DAvatar, wantsLive2D } from "./live2d.js";
import { Microphone, pcmToBase64 } from "./mic.js";
import { Player } from "./player.js";

const PROTOCOL_VERSION = 1;

const STATE_TEXT = { listening: "聞いています", thinking: "考えています…", speaking: "話しています", sleeping: "おやすみ中" };
const EMOTION_TEXT = {
  neutral: "ふつう", happy: "うれしそう", sad: "かなしそう", angry: "おこっている", fearful: "不安そう",
  surprised: "おどろいている", disgusted: "いやそう", calm: "おだやか", tired: "つかれていそう",
  excited: "はずんでいる",
};
const EMOTION_COLOR = {
  neutral: "#9aa0b8", happy: "#f4d58d", sad: "#7dcfff", angry: "#ff7a8a", fearful: "#bb9af7",
  surprised: "#ff9e64", disgusted: "#9ece6a", calm: "#73daca", tired: "#a9b1d6", excited: "#e0af68",
};
// The user's emotion is shown only from a calibrated tagger (a trained model), and only this sure.
const EMOTION_SHOW_SCORE = 0.6;
// After the reply the persona's face eases back to neutral this long after it stopped speaking.
const FACE_REST_MS = 1500;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token");

const S = (window.saijin = {
  protocolVersion: PROTOCOL_VERSION,
  connected: false,
  hello: null,
  helloCount: 0,
  personas: [],
  persona: null,
  state: "listening",
  mode: "normal",
  expression: "neutral",       // the built-in face shown (or the emotion behind the Live2D expression)
  live2dExpression: null,      // the model's expression applied, in Live2D mode
  mouth: 0,                    // the mouth value applied to the avatar this frame
  avatarKind: "none",
  live2dError: null,
  userEmotion: null,
  received: {},                // message counts by type
  errors: [],
  sent: [],
  playback: [],                // playback reports sent: {type, turn_id, sentence_index, played_s}
});

let ws = null;
let retryMs = 500;
let avatar = null;
let avatarGeneration = 0;
let faceRestTimer = 0;
let stopPressedAt = -1e9;
let quietSince = performance.now();  // the sleep timer's clock: the last speech of either side
let sleepTimer = 0;
// A stop pressed this recently explains an interruption (it is not the user going on speaking).
const STOP_EXPLAINS_MS = 5000;
// A merged turn's interruption and the next turn's start arrive together; this long at most.
const MERGE_WINDOW_MS = 1500;
const subtitles = new Map();     // turn -> Map(sentence_index -> {text, persona})
const bubbles = new Map();       // "a:turn" / "u:turn" -> element
const heard = new Map();         // turn -> Map(sentence_index -> fraction heard), for turns the page plays
const cutTurns = new Set();      // turns stopped or barged into: what arrives later of them was never said

// ------------------------------------------------------------------ connection

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`;
}

function connect() {
  setConn("connecting", "接続しています…");
  ws = new WebSocket(wsUrl());
  ws.onopen = () => {
    S.connected = true;
    retryMs = 500;
    setConn("open", "接続しました");
  };
  ws.onmessage = (e) => {
    let msg;
    try { msg = JSON.parse(e.data); } catch (_) { return; }
    S.received[msg.type] = (S.received[msg.type] || 0) + 1;
    const handler = HANDLERS[msg.type];
    if (handler) {
      try { handler(msg); } catch (err) { console.error(msg.type, err); }
    }
  };
  ws.onclose = () => {
    S.connected = false;
    setConn("closed", "接続が切れました — 再接続します…");
    if (mic.isOpen) stopMic(false);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  };
  ws.onerror = () => {};
}

function send(msg) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(msg));
  if (msg.type !== "mic-audio") S.sent.push(msg.type);
  return true;
}

function setConn(status, text) {
  $("conn").dataset.status = status;
  $("conn-text").textContent = text;
}

setInterval(() => send({ type: "ping", id: Date.now() }), 15000);

// ------------------------------------------------------------------ personas and avatar

function personaById(id) {
  return S.personas.find((p) => p.id === id) || null;
}

function renderPersonas() {
  const list = $("persona-list");
  list.textContent = "";
  for (const p of S.personas) {
    const li = document.createElement("li");
    const card = document.createElement("button");
    card.type = "button";
    card.className = "persona-card";
    card.dataset.persona = p.id;
    card.style.setProperty("--c", p.color);
    card.setAttribute("aria-current", String(S.persona && S.persona.id === p.id));
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = p.display_name;
    const desc = document.createElement("span");
    desc.className = "desc";
    desc.textContent = p.description;
    card.append(swatch, name, desc);
    card.addEventListener("click", () => {
      if (S.persona && S.persona.id === p.id) return;
      card.classList.add("pending");
      send({ type: "set-persona", persona: p.id });
    });
    li.appendChild(card);
    list.appendChild(li);
  }
}

function setPersona(id) {
  const p = personaById(id);
  if (!p) return;
  const changed = !S.persona || S.persona.id !== p.id;
  S.persona = p;
  document.documentElement.style.setProperty("--accent", p.color);
  for (const card of document.querySelectorAll(".persona-card")) {
    card.setAttribute("aria-current", String(card.dataset.persona === p.id));
    card.classList.remove("pending");
  }
  $("caption-who").textContent = p.display_name;
  if (changed) {
    // A new persona starts with her own neutral face and no caption of the last persona's line.
    clearTimeout(faceRestTimer);
    S.expression = "neutral";
    setCaption("");
  }
  if (changed || !avatar) setupAvatar(p);
  else avatar.setPersona(p);
}

async function setupAvatar(persona) {
  const generation = ++avatarGeneration;
  const container = $("avatar");
  const note = $("live2d-note");
  if (avatar) { avatar.destroy(); avatar = null; }
  container.textContent = "";
  note.hidden = true;
  S.live2dError = null;
  if (wantsLive2D(persona)) {
    S.avatarKind = "loading";
    try {
      const live = await createLive2DAvatar(container, persona, S.hello && S.hello.live2d_libs);
      if (generation !== avatarGeneration) { live.destroy(); return; }
      avatar = live;
      S.avatarKind = "live2d";
      S.live2dAvatar = live;
    } catch (err) {
      if (generation !== avatarGeneration) return;
      S.live2dError = String(err && err.message || err);
      note.textContent = `Live2D を表示できませんでした（${S.live2dError}）— 内蔵のアバターで表示しています`;
      note.hidden = false;
      console.warn("Live2D:", err);
    }
  }
  if (!avatar) {
    container.textContent = "";
    avatar = new BuiltinAvatar(container, persona);
    S.avatarKind = "builtin";
  }
  wakeFrame();
  avatar.setState(S.state);
  if (avatar.setMode) avatar.setMode(S.mode);
  applyExpression(S.expression);
}

function restFace(delayMs) {
  clearTimeout(faceRestTimer);
  faceRestTimer = setTimeout(() => applyExpression("neutral"), delayMs);
}

function applyExpression(name) {
  S.expression = resolveFace(name, S.persona);
  if (!avatar) return;
  const result = avatar.setExpression(name);
  if (avatar.kind === "live2d") S.live2dExpression = result;
}

// ------------------------------------------------------------------ state, mode, caption

function setState(value) {
  const was = S.state;
  S.state = value;
  // The reply's face is a reaction, not a mood: back to neutral when the persona has finished (or sleeps).
  if (value === "sleeping") restFace(0);
  if (value === "sleeping" || was === "sleeping") updateSleepTimer();
  if (was === "sleeping" && value !== "sleeping") noteActivity();
  else if (value === "listening" && was !== "listening") restFace(FACE_REST_MS);
  document.body.classList.remove("state-listening", "state-thinking", "state-speaking", "state-sleeping");
  document.body.classList.add(`state-${value}`);
  $("state-text").textContent = STATE_TEXT[value] || value;
  if (avatar) avatar.setState(value);
}

function setMode(value) {
  const was = S.mode;
  S.mode = value;
  if (value === "bedtime" && was !== "bedtime") noteActivity();
  if (avatar && avatar.setMode) avatar.setMode(value);
  document.body.classList.toggle("mode-bedtime", value === "bedtime");
  document.body.classList.toggle("mode-normal", value !== "bedtime");
  $("mode-toggle").setAttribute("aria-pressed", String(value === "bedtime"));
  player.setVolume(value === "bedtime" ? 0.8 : 1);
  updateSleepTimer();
}

// ------------------------------------------------------------------ bedtime's sleep timer

/** Speech of either side restarts the sleep timer (as the server's does). */
function noteActivity() {
  quietSince = performance.now();
  if (S.mode === "bedtime") updateSleepTimer();
}

function updateSleepTimer() {
  clearTimeout(sleepTimer);
  const el = $("sleep-timer");
  const total = S.hello && S.hello.sleep_after_s;
  const isShown = S.mode === "bedtime" && typeof total === "number" && total > 0;
  el.hidden = !isShown;
  if (!isShown) { S.sleepTimer = null; return; }
  const isAsleep = S.state === "sleeping";
  const quiet = (performance.now() - quietSince) / 1000;
  const progress = isAsleep ? 1 : Math.min(1, quiet / total);
  const remaining = Math.max(0, total - quiet);
  el.style.setProperty("--p", progress.toFixed(3));
  el.classList.toggle("asleep", isAsleep);
  $("sleep-text").textContent = isAsleep ? "おやすみ中" : remaining >= 60 ? `おやすみまで あと ${Math.ceil(remaining / 60)} 分`
    : `おやすみまで あと ${Math.ceil(remaining)} 秒`;
  S.sleepTimer = { progress, remainingS: isAsleep ? 0 : remaining, isAsleep };
  // A slow clock: the ring moves a little every few seconds, nothing more (the page stays idle).
  if (!isAsleep && !document.hidden) sleepTimer = setTimeout(updateSleepTimer, remaining > 120 ? 10000 : 1000);
}

function setCaption(text, who) {
  $("caption-text").textContent = text || "";
  if (who) $("caption-who").textContent = who;
}

// ------------------------------------------------------------------ conversation log

function logEl() { return $("transcript"); }

function scrollLog() {
  const log = logEl();
  log.scrollTop = log.scrollHeight;
}

function userBubble(turn) {
  let b = bubbles.get(`u:${turn}`);
  if (!b) {
    // The bubble of a turn merged into this one (the user went on speaking) becomes this one's.
    b = adoptStaleUserBubble(turn);
  }
  if (!b) {
    b = document.createElement("li");
    b.className = "bubble user";
    b.innerHTML = '<span class="who">あなた</span><span class="text"></span>';
    logEl().appendChild(b);
    bubbles.set(`u:${turn}`, b);
  }
  return b;
}

function adoptStaleUserBubble(turn) {
  for (const [key, b] of bubbles) {
    if (!key.startsWith("u:") || Number(key.slice(2)) >= turn || !b.classList.contains("superseded")) continue;
    bubbles.delete(key);
    b.classList.remove("superseded");
    bubbles.set(`u:${turn}`, b);
    return b;
  }
  return null;
}

function stopPressed() {
  return performance.now() - stopPressedAt < STOP_EXPLAINS_MS;
}

function wasHeard(turn) {
  const fractions = heard.get(turn);
  return !!fractions && [...fractions.values()].some((f) => f > 0);
}

/** After a stop or barge-in: the bubble and caption keep what was heard; the rest is marked not spoken. */
function markUnspoken(turn) {
  const b = bubbles.get(`a:${turn}`);
  const fractions = heard.get(turn) || new Map();
  let isCut = false;
  let heardPart = null;
  if (b) {
    for (const span of [...b.querySelectorAll(".sentence")].sort((x, y) => x.dataset.index - y.dataset.index)) {
      const f = isCut ? 0 : (fractions.get(Number(span.dataset.index)) ?? 0);
      if (f >= 0.999) continue;
      const line = (subtitles.get(turn) || new Map()).get(Number(span.dataset.index));
      const text = line ? line.text : span.textContent;
      const cutAt = f > 0 ? Math.max(1, Math.floor(text.length * f)) : 0;
      span.textContent = "";
      if (cutAt > 0) {
        span.append(document.createTextNode(text.slice(0, cutAt)));
        heardPart = `${text.slice(0, cutAt)}…`;
      }
      const rest = document.createElement("span");
      rest.className = "unspoken";
      rest.title = "話されませんでした";
      rest.textContent = text.slice(cutAt);
      span.append(rest);
      span.classList.toggle("cut-sentence", cutAt > 0);
      isCut = true;
    }
    b.classList.add("cut");
  }
  const caption = $("caption-text").textContent;
  const lines = [...(subtitles.get(turn) || new Map()).entries()];
  const shown = lines.find(([, line]) => line.text === caption);
  if (shown) {
    const f = fractions.get(shown[0]) ?? 0;
    if (f < 0.999) setCaption(heardPart || "");
  }
}

function assistantBubble(turn, personaId) {
  let b = bubbles.get(`a:${turn}`);
  if (!b) {
    const p = personaById(personaId) || S.persona;
    b = document.createElement("li");
    b.className = "bubble assistant";
    b.dataset.turn = turn;
    if (p) b.style.setProperty("--c", p.color);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = p ? p.display_name : personaId;
    const text = document.createElement("span");
    text.className = "text";
    b.append(who, text);
    logEl().appendChild(b);
    bubbles.set(`a:${turn}`, b);
  }
  return b;
}

function addNotice(text) {
  const b = document.createElement("li");
  b.className = "bubble notice";
  b.textContent = text;
  logEl().appendChild(b);
  scrollLog();
}

function toast(text, kind = "") {
  const t = document.createElement("div");
  t.className = `toast ${kind}`;
  t.textContent = text;
  $("toasts").appendChild(t);
  setTimeout(() => t.remove(), kind === "error" ? 6000 : 4000);
}

// ------------------------------------------------------------------ audio

const player = new Player({
  onStart(item) {
    wakeFrame();
    const line = (subtitles.get(item.turn) || new Map()).get(item.index);
    const p = personaById(line && line.persona) || S.persona;
    setCaption(line ? line.text : item.text, p && p.display_name);
    markSpeaking(item.turn, item.index);
    if (item.clock === "audio") {
      const report = { type: "playback-started", turn_id: item.turn, sentence_index: item.index, level: Number(item.level.toFixed(4)) };
      send(report);
      S.playback.push(report);
    }
  },
  onEnd(item, playedS, wasCut) {
    wakeFrame();
    markSpeaking(item.turn, -1);
    noteActivity();
    if (!heard.has(item.turn)) heard.set(item.turn, new Map());
    heard.get(item.turn).set(item.index, item.duration > 0 ? Math.min(1, playedS / item.duration) : (wasCut ? 0 : 1));
    if (item.clock === "audio" && item.started) {
      const report = { type: "playback-finished", turn_id: item.turn, sentence_index: item.index, played_s: Number(playedS.toFixed(3)) };
      send(report);
      S.playback.push({ ...report, cut: wasCut });
    }
  },
  onGate(blocked) {
    $("sound-gate").hidden = !blocked;
  },
});

function markSpeaking(turn, index) {
  const b = bubbles.get(`a:${turn}`);
  if (!b) return;
  for (const s of b.querySelectorAll(".sentence")) s.classList.toggle("speaking", Number(s.dataset.index) === index);
}

// The page's frame loop runs only while sound plays (the mouth follows it) or the mouth is closing, and
// always for a Live2D model (its WebGL canvas draws every frame anyway); an idle page draws nothing.
let frameId = 0;

function wakeFrame() {
  if (!frameId && !document.hidden) frameId = requestAnimationFrame(frame);
}

function frame() {
  frameId = 0;
  const m = player.mouthNow();
  if (avatar) {
    avatar.setMouth(m);
    if (avatar.renderFrame) avatar.renderFrame();
    S.mouth = avatar.mouth;
    if (avatar.kind === "live2d") {
      S.live2dMouthParam = avatar.lastMouthParam;
      S.live2dShownExpression = avatar.currentExpressionName();
    }
  }
  S.playerMouth = m;
  S.isPlaying = player.isPlaying;
  const cur = player.current();
  S.playhead = cur ? { turn: cur.item.turn, index: cur.item.index, t: cur.t, duration: cur.item.duration } : null;
  if (player.items.length || S.mouth > 0 || (avatar && avatar.kind === "live2d")) wakeFrame();
}

// ------------------------------------------------------------------ messages from the server

const HANDLERS = {
  hello(msg) {
    S.hello = msg;
    S.helloCount += 1;
    if (msg.protocol_version !== PROTOCOL_VERSION) {
      toast(`サーバーのプロトコル v${msg.protocol_version} はこのページ (v${PROTOCOL_VERSION}) と違います — ページを再読み込みしてください`, "error");
    }
    S.personas = msg.personas || [];
    renderPersonas();
    setMode(msg.mode);
    setState(msg.state);
    setPersona(msg.persona || (S.personas[0] && S.personas[0].id));
  },
  pong(msg) {
    if (typeof msg.id === "number") S.pingMs = Date.now() - msg.id;
  },
  state(msg) { setState(msg.value); },
  speaker(msg) { setPersona(msg.persona); },
  mode(msg) {
    const was = S.mode;
    setMode(msg.value);
    if (was !== msg.value) addNotice(msg.value === "bedtime" ? "おやすみモードになりました" : "ふつうのモードに戻りました");
  },
  "user-speech-started"(msg) {
    noteActivity();
    const b = userBubble(msg.turn_id);
    b.classList.add("listening");
    $("mic").classList.add("hearing");
    scrollLog();
  },
  "user-speech-ended"() {
    $("mic").classList.remove("hearing");
  },
  "turn-dropped"(msg) {
    // Nothing to answer (too short, nothing intelligible): a bubble still waiting for words goes.
    const b = bubbles.get(`u:${msg.turn_id}`);
    if (b && !b.querySelector(".text").textContent.trim()) {
      b.remove();
      bubbles.delete(`u:${msg.turn_id}`);
    }
  },
  "user-transcript"(msg) {
    noteActivity();
    let b = bubbles.get(`u:${msg.turn_id}`);
    if (!b) {
      // Text typed here shows at once as pending; the transcript confirms it.
      const pending = [...logEl().querySelectorAll(".bubble.user.pending")].find((x) => x.dataset.text === msg.text);
      if (pending) { b = pending; bubbles.set(`u:${msg.turn_id}`, b); }
    }
    b = b || userBubble(msg.turn_id);
    b.classList.remove("listening", "pending", "superseded");
    b.querySelector(".text").textContent = msg.text;
    scrollLog();
  },
  "user-emotion"(msg) {
    // A heuristic's guess (prosody) is not shown as a finding about the user: only a calibrated, sure one.
    const isShown = msg.is_calibrated === true && (msg.score || 0) >= EMOTION_SHOW_SCORE;
    S.userEmotion = { label: msg.label, score: msg.score, scores: msg.scores, isCalibrated: msg.is_calibrated === true, isShown };
    const chip = $("user-emotion");
    chip.hidden = !isShown;
    if (!isShown) return;
    chip.dataset.label = msg.label;
    chip.style.setProperty("--emo", EMOTION_COLOR[msg.label] || "#9aa0b8");
    $("emotion-label").textContent = EMOTION_TEXT[msg.label] || msg.label;
    $("emotion-score").textContent = `${Math.round((msg.score || 0) * 100)}%`;
    const b = bubbles.get(`u:${msg.turn_id}`);
    if (b && !b.querySelector(".emo")) {
      const emo = document.createElement("span");
      emo.className = "emo";
      emo.textContent = EMOTION_TEXT[msg.label] || msg.label;
      b.querySelector(".who").appendChild(emo);
    }
  },
  expression(msg) {
    if (S.persona && msg.persona && msg.persona !== S.persona.id) return;
    clearTimeout(faceRestTimer);
    applyExpression(msg.name);
  },
  subtitle(msg) {
    noteActivity();
    if (!subtitles.has(msg.turn_id)) subtitles.set(msg.turn_id, new Map());
    subtitles.get(msg.turn_id).set(msg.sentence_index, { text: msg.text, persona: msg.persona });
    const b = assistantBubble(msg.turn_id, msg.persona);
    const span = document.createElement("span");
    span.className = "sentence";
    span.dataset.index = msg.sentence_index;
    if (cutTurns.has(msg.turn_id)) {
      // Written after the stop: never said.
      const rest = document.createElement("span");
      rest.className = "unspoken";
      rest.title = "話されませんでした";
      rest.textContent = msg.text;
      span.append(rest);
    } else {
      span.textContent = msg.text;
    }
    b.querySelector(".text").appendChild(span);
    if (!player.isPlaying && !cutTurns.has(msg.turn_id)) {
      setCaption(msg.text, (personaById(msg.persona) || S.persona || {}).display_name);
    }
    scrollLog();
    while (subtitles.size > 50) subtitles.delete(subtitles.keys().next().value);
  },
  audio(msg) {
    player.enqueue(msg).then(wakeFrame);
  },
  interrupted(msg) {
    player.stopTurn(msg.turn_id);
    cutTurns.add(msg.turn_id);
    while (cutTurns.size > 50) cutTurns.delete(cutTurns.values().next().value);
    const user = bubbles.get(`u:${msg.turn_id}`);
    if (!wasHeard(msg.turn_id) && user && !stopPressed()) {
      // Nothing of the reply was heard and the user went on speaking: the turn merges into the next one,
      // whose words (all of them) take this bubble; the unheard reply is not shown.
      // (The next turn starts at once; a turn cancelled for another reason keeps its words, and an empty
      // bubble goes.)
      user.classList.add("superseded");
      const reply = bubbles.get(`a:${msg.turn_id}`);
      if (reply) { reply.remove(); bubbles.delete(`a:${msg.turn_id}`); }
      setTimeout(() => {
        if (!user.classList.contains("superseded")) return;
        user.classList.remove("superseded", "listening");
        if (!user.querySelector(".text").textContent.trim() && bubbles.get(`u:${msg.turn_id}`) === user) {
          user.remove();
          bubbles.delete(`u:${msg.turn_id}`);
        }
      }, MERGE_WINDOW_MS);
      return;
    }
    // The page knows what was heard when it plays the sound (it is the output, not the server's speaker).
    if (heard.has(msg.turn_id) || player.hasTurn(msg.turn_id) || player.seen.size > 0) markUnspoken(msg.turn_id);
    else {
      const b = bubbles.get(`a:${msg.turn_id}`);
      if (b) b.classList.add("cut");
    }
  },
  latency(msg) {
    if (typeof msg.voice_to_voice_ms === "number") {
      const el = $("latency");
      el.hidden = false;
      el.textContent = `応答 ${Math.round(msg.voice_to_voice_ms)} ms`;
    }
  },
  notice(msg) { toast(msg.message); },
  error(msg) {
    if (msg.code === "mic-busy" && mic.isOpen) stopMic(false);
    S.errors.push(msg);
    if (S.errors.length > 100) S.errors.shift();
    toast(msg.message, "error");
  },
};

// ------------------------------------------------------------------ controls

const mic = new Microphone({
  onChunk(pcm) { send({ type: "mic-audio", pcm: pcmToBase64(pcm) }); },
  onLevel(level) { $("mic").style.setProperty("--lvl-scale", String(1 + level * 0.35)); },
});

async function startMic() {
  try {
    await mic.start();
    $("mic").setAttribute("aria-pressed", "true");
    S.micOpen = true;
  } catch (err) {
    toast(`マイクを使えません: ${err.message || err}`, "error");
  }
}

async function stopMic(tell = true) {
  await mic.stop();
  $("mic").setAttribute("aria-pressed", "false");
  S.micOpen = false;
  if (tell) send({ type: "mic-end" });
}

function stopSpeaking() {
  stopPressedAt = performance.now();
  const playing = player.turns();
  player.stopAll();
  for (const turn of playing) {
    cutTurns.add(turn);
    markUnspoken(turn);
  }
  send({ type: "interrupt" });
}

function wireControls() {
  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (!text) return;
    if (!send({ type: "text-input", text })) {
      toast("接続していません — 再接続を待っています", "error");
      return;
    }
    player.unlock();
    const b = document.createElement("li");
    b.className = "bubble user pending";
    b.dataset.text = text;
    b.innerHTML = '<span class="who">あなた</span><span class="text"></span>';
    b.querySelector(".text").textContent = text;
    logEl().appendChild(b);
    scrollLog();
    input.value = "";
  });
  $("mic").addEventListener("click", () => {
    player.unlock();
    mic.isOpen ? stopMic() : startMic();
  });
  $("interrupt").addEventListener("click", stopSpeaking);
  $("mode-toggle").addEventListener("click", () => {
    send({ type: "set-mode", value: S.mode === "bedtime" ? "normal" : "bedtime" });
  });
  $("sound-unlock").addEventListener("click", () => player.unlock());
  // Keyboard: Enter sends (the form), Esc stops the reply, Ctrl+M opens or closes the microphone.
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !e.repeat) {
      e.preventDefault();
      stopSpeaking();
    } else if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === "m" || e.key === "M") && !e.repeat) {
      e.preventDefault();
      player.unlock();
      mic.isOpen ? stopMic() : startMic();
    }
  });
  document.addEventListener("pointerdown", () => { if (player.ctx && player.ctx.state === "suspended") player.unlock(); });
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  wakeFrame();
  updateSleepTimer();
});

wireControls();
connect();
wakeFrame();
