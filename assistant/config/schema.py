"""The shape of every configuration file, as pydantic models. Unknown keys are errors everywhere."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: ``tired`` and ``excited`` are low and high energy: what a tagger of prosody alone can tell.
CANONICAL_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "surprised", "disgusted", "calm",
                                       "tired", "excited")
#: The emotions that get reassurance first in bedtime mode: the prompt's ``reassurance_first`` rule and the
#: persona's scripted ``reassurance`` lines.
NEEDS_REASSURANCE: frozenset[str] = frozenset({"sad", "fearful"})

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


# --------------------------------------------------------------------------------------------------
# assistant.yaml
# --------------------------------------------------------------------------------------------------


class AudioConfig(Strict):
    #: A PortAudio device (index or name) or a PulseAudio source's name or description; None: the default.
    input_device: str | int | None = None
    #: A PortAudio device (index or name) or a PulseAudio sink's name or description; None: the default.
    output_device: str | int | None = None
    #: The speaker's device buffer: larger survives a busy CPU without underruns, smaller stops sooner.
    output_latency_ms: Annotated[int, Field(ge=10, le=1000)] = 100
    #: Pace WAV input in real time (like a microphone) or read it as fast as possible.
    realtime_file_input: bool = True
    #: Longer WAV input files are refused (they are read into memory whole).
    max_file_input_s: Annotated[float, Field(gt=0)] = 3600.0


class VadConfig(Strict):
    aggressiveness: Annotated[int, Field(ge=0, le=3)] = 2
    frame_ms: Literal[10, 20, 30] = 20
    #: A run of voiced audio this long starts an utterance.
    start_ms: Annotated[int, Field(ge=10, le=1000)] = 40
    #: Silence this long ends an utterance (with ``end_of_turn: adaptive``: when its words are unclear).
    hangover_ms: Annotated[int, Field(ge=60, le=3000)] = 300
    #: adaptive: the words so far decide how long the silence must be; fixed: always ``hangover_ms``.
    end_of_turn: Literal["adaptive", "fixed"] = "adaptive"
    #: Adaptive: silence that ends an utterance whose words are clearly finished (「〜ね。」, "…today?").
    complete_hangover_ms: Annotated[int, Field(ge=60, le=3000)] = 160
    #: Adaptive: silence that ends an utterance that is clearly unfinished (「〜けど」, "and", a comma).
    unfinished_hangover_ms: Annotated[int, Field(ge=60, le=5000)] = 900
    #: Adaptive: the longest the VAD waits for the words of a pause before ending the utterance anyway.
    words_wait_ms: Annotated[int, Field(ge=60, le=5000)] = 1500
    #: Audio kept from before the onset, so the first syllable is never clipped.
    preroll_ms: Annotated[int, Field(ge=200, le=2000)] = 300
    #: Utterances shorter than this (clicks, coughs) are dropped.
    min_utterance_ms: Annotated[int, Field(ge=0, le=5000)] = 250
    #: A monologue longer than this is cut and transcribed.
    max_utterance_s: Annotated[float, Field(gt=1, le=120)] = 20.0
    #: With ``asr.english_model``: this much of a segment's speech is probed for its language while the
    #: user goes on speaking.
    language_probe_ms: Annotated[int, Field(ge=300, le=5000)] = 1000


class AsrConfig(Strict):
    backend: Literal["faster-whisper"] = "faster-whisper"
    #: A faster-whisper model name (large-v3-turbo, base, tiny.en), a local path, or offline:NAME.
    model: str = "large-v3-turbo"
    #: A smaller English-only model that writes what is known to be English (``language: en``, or a
    #: segment whose language ``model`` heard in its first second, ``vad.language_probe_ms``), e.g.
    #: offline:whisper-tiny.en on a CPU. None: ``model`` writes every language.
    english_model: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"
    language: str = "ja"
    beam_size: Annotated[int, Field(ge=1, le=10)] = 1
    initial_prompt: str | None = None
    hotwords: str | None = None
    #: Utterances quieter than this RMS (0..1 full scale) are not transcribed.
    rms_gate: Annotated[float, Field(ge=0, le=1)] = 0.004
    no_speech_threshold: Fraction = 0.6
    #: Transcribe as soon as silence begins; kept if the user does not resume (saves the ASR time).
    speculative: bool = True
    blocklist: list[str] = Field(default_factory=list)

    @property
    def detects_language(self) -> bool:
        """``language`` is auto (or empty): Whisper hears each segment's language; else it is what was set."""
        return self.language in ("", "auto")

    @property
    def probes_language(self) -> bool:
        """Each segment's first second is heard early to send English to ``english_model`` (a set language
        is never second-guessed)."""
        return self.english_model is not None and self.detects_language


class EmotionConfig(Strict):
    enabled: bool = True
    backend: Literal["transformers", "prosody"] = "transformers"
    model: str = "superb/wav2vec2-base-superb-er"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Below this confidence the label is neutral.
    threshold: Fraction = 0.4
    #: The model's labels -> canonical labels.
    label_map: dict[str, str] = Field(default_factory=dict)

    @field_validator("label_map")
    @classmethod
    def _canonical_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for source, target in value.items():
            if target not in CANONICAL_EMOTIONS:
                raise ValueError(f"{source!r} maps to {target!r}, which is not one of {', '.join(CANONICAL_EMOTIONS)}")
        return value


class TtsConfig(Strict):
    #: Silence between sentences, in milliseconds.
    sentence_pause_ms: Annotated[int, Field(ge=0, le=3000)] = 120
    #: Send synthesised audio to the page as base64 WAV in `audio` events.
    send_audio_to_page: bool = True


class TurnsConfig(Strict):
    #: The user speaks again before the reply is heard: after a pause up to this long it is the same turn
    #: (the parts merge); after a longer one it is a new question, answered after the first — unless the
    #: first part was clearly unfinished, which always merges.
    merge_pause_ms: Annotated[int, Field(ge=0, le=10000)] = 1500


class BargeInConfig(Strict):
    enabled: bool = True
    #: Speech shorter than this (backchannels, coughs) does not interrupt.
    min_speech_ms: Annotated[int, Field(ge=0, le=3000)] = 400
    #: Loudspeakers: remove the assistant's own voice from the microphone (WebRTC AEC, the 'livekit' package).
    #: auto: with the microphone and the speaker when livekit is installed; on: always (an error without it).
    echo_cancellation: Literal["auto", "on", "off"] = "auto"
    #: The half-duplex fallback (no echo canceller): off: always listen; mute: ignore the microphone while
    #: speaking; raise: need louder speech while speaking.
    echo_gate: Literal["off", "mute", "raise"] = "off"
    #: With echo_gate: raise, speech must be this many times louder than the assistant's own output.
    echo_gate_ratio: Annotated[float, Field(ge=1)] = 2.0

    @field_validator("echo_gate", "echo_cancellation", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as false and `on` as true.
        if value is False:
            return "off"
        return "on" if value is True else value


class BridgeConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8765
    #: Required for any bind other than loopback; pages pass it as ?token=...
    token: str | None = None
    allowed_origins: list[str] = Field(default_factory=list)
    max_message_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024
    max_messages_per_second: Annotated[float, Field(gt=0)] = 100.0
    client_queue_size: Annotated[int, Field(ge=1)] = 256
    #: Live2D libraries (pixi.js 6 browser build, pixi-live2d-display 0.4 cubism4 build): a path or URL each;
    #: null: looked up in node_modules (the project's, then .cache/npm).
    pixi_script: str | None = None
    live2d_display_script: str | None = None


class MemoryConfig(Strict):
    database: str = "data/memory.db"
    #: Write a rolling summary every this many turns (in the background).
    summary_every: Annotated[int, Field(ge=1)] = 12
    recall_limit: Annotated[int, Field(ge=0, le=20)] = 3
    recent_turns: Annotated[int, Field(ge=0, le=100)] = 8
    #: The memory part of the prompt (summary + recalled snippets + recent turns) stays within this many characters.
    prompt_budget_chars: Annotated[int, Field(ge=200)] = 4000
    #: normal: a committed turn survives the process being killed; full: also a power cut (an fsync per turn).
    synchronous: Literal["normal", "full"] = "normal"


class ScheduleWindow(Strict):
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"must be a time as HH:MM (got {value!r})")
        return value


class BedtimeConfig(Strict):
    #: Enter bedtime mode automatically inside this window (e.g. 23:00-06:00); null for never.
    schedule: ScheduleWindow | None = None
    enter_phrases: dict[str, list[str]] = Field(default_factory=dict)
    exit_phrases: dict[str, list[str]] = Field(default_factory=dict)
    wake_phrases: dict[str, list[str]] = Field(default_factory=dict)
    #: In bedtime mode these get a good-night line at once, without the LLM.
    good_night_phrases: dict[str, list[str]] = Field(default_factory=dict)
    #: Minutes without user speech before the last good-night line and sleep.
    sleep_after_min: Annotated[float, Field(gt=0)] = 20.0
    #: Seconds of silence before a presence line such as 「ここにいるよ」.
    presence_after_s: Annotated[float, Field(gt=0)] = 90.0
    fade_out_s: Annotated[float, Field(ge=0, le=30)] = 3.0
    #: VAD settings while in bedtime mode (quiet speech, no interruption by sighs).
    vad_aggressiveness: Annotated[int, Field(ge=0, le=3)] = 1
    rms_gate: Annotated[float, Field(ge=0, le=1)] = 0.002
    barge_in_min_speech_ms: Annotated[int, Field(ge=0, le=5000)] = 900


class AssistantConfig(Strict):
    #: auto picks gpu when CUDA is present, else cpu.
    profile: str = "auto"
    persona: str = "yuuri"
    language: str = "ja"
    #: Where state (last persona, mode) and logs go; relative to the config folder's parent.
    data_dir: str = "data"
    audio: AudioConfig = Field(default_factory=AudioConfig)
    vad: VadConfig = Field(default_factory=VadConfig)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    emotion: EmotionConfig = Field(default_factory=EmotionConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    turns: TurnsConfig = Field(default_factory=TurnsConfig)
    barge_in: BargeInConfig = Field(default_factory=BargeInConfig)
    bridge: BridgeConfig = Field(default_factory=BridgeConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    bedtime: BedtimeConfig = Field(default_factory=BedtimeConfig)


# --------------------------------------------------------------------------------------------------
# rules.yaml
# --------------------------------------------------------------------------------------------------


class RulesConfig(Strict):
    #: Rules every persona follows, in the order given.
    rules: list[str] = Field(min_length=1)
    #: Expression tags the model may use, e.g. [joy]; they are removed from speech and shown on the avatar.
    expression_tags: list[str] = Field(default_factory=list)
    #: The longest reply spoken for one turn, in characters (endless output is cut).
    max_reply_chars: Annotated[int, Field(ge=20)] = 400
    #: The longest spoken sentence, in characters; a longer one is cut at a comma or space.
    max_sentence_chars: Annotated[int, Field(ge=10)] = 120
    #: Added to the system prompt in bedtime mode.
    bedtime_overlay: str = ""
    #: Added when the user sounds sad or fearful in bedtime mode: reassurance comes first.
    reassurance_first: str = ""


# --------------------------------------------------------------------------------------------------
# personas/<id>.yaml
# --------------------------------------------------------------------------------------------------


class VoiceStyle(Strict):
    """Voice settings that a mode (bedtime) layers over the persona's usual voice."""

    length_scale: PositiveFloat | None = None
    speaking_rate: PositiveFloat | None = None
    volume: Annotated[float, Field(gt=0, le=2)] | None = None
    sentence_pause_ms: Annotated[int, Field(ge=0, le=5000)] | None = None


class VoiceConfig(Strict):
    backend: Literal["piper", "vits", "kokoro"] = "piper"
    #: A voice name from voices/manifest.yaml, a model path (.onnx, a VITS folder), a Kokoro voice id, or offline:NAME.
    voice: str
    speaker_id: int | None = None
    #: Piper: bigger is slower. Kokoro: converted to speed = 1 / length_scale.
    length_scale: PositiveFloat = 1.0
    #: VITS: bigger is faster.
    speaking_rate: PositiveFloat = 1.0
    volume: Annotated[float, Field(gt=0, le=2)] = 1.0
    noise_scale: Annotated[float, Field(ge=0, le=2)] | None = None
    noise_w: Annotated[float, Field(ge=0, le=2)] | None = None
    bedtime: VoiceStyle = Field(default_factory=lambda: VoiceStyle(length_scale=1.3, speaking_rate=0.8, volume=0.55,
                                                                   sentence_pause_ms=700))


class Live2DConfig(Strict):
    #: URL or path of live2dcubismcore.min.js (never shipped with Saijin).
    core_script: str | None = None
    #: URL or path of the model's .model3.json.
    model: str | None = None
    scale: PositiveFloat = 1.0


#: The persona's face for the user's state, unless its persona file says otherwise: comfort for a low or
#: worried user, calm concern for an angry one, joy shared. Neutral gets no reaction.
DEFAULT_REACTIONS: dict[str, str] = {
    "sad": "concerned", "tired": "gentle", "fearful": "concerned", "angry": "concerned", "disgusted": "concerned",
    "happy": "happy", "excited": "happy", "surprised": "surprised", "calm": "calm",
}
#: Faces a reaction may never be: nobody is met with anger or disgust.
HOSTILE_FACES: frozenset[str] = frozenset({"angry", "anger", "disgusted", "disgust"})


class AvatarConfig(Strict):
    color: str = "#7aa2f7"
    live2d: Live2DConfig = Field(default_factory=Live2DConfig)
    #: canonical emotion or expression tag -> the avatar's expression name.
    expressions: dict[str, str] = Field(default_factory=dict)
    #: the user's state (a canonical emotion) -> the persona's reaction (an expression tag), over
    #: ``DEFAULT_REACTIONS``; ``neutral`` as a reaction means no reaction.
    reactions: dict[str, str] = Field(default_factory=dict)

    @field_validator("color")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError(f"must be a colour like #7aa2f7 (got {value!r})")
        return value

    @model_validator(mode="after")
    def _kind_reactions(self) -> AvatarConfig:
        hostile = {name.casefold() for name in HOSTILE_FACES}
        hostile |= {self.expressions[name].casefold() for name in HOSTILE_FACES if name in self.expressions}
        for state, reaction in self.reactions.items():
            if state not in CANONICAL_EMOTIONS:
                raise ValueError(f"reactions: {state!r} is not one of {', '.join(CANONICAL_EMOTIONS)}")
            if reaction.casefold() in hostile or self.expressions.get(reaction, reaction).casefold() in hostile:
                raise ValueError(f"reactions.{state}: {reaction!r} is a hostile face — react with concern or calm")
        return self

    def reaction_to(self, state: str | None) -> str | None:
        """The expression the persona reacts with to the user's state, or None (neutral, unknown)."""
        if not state:
            return None
        reaction = {**DEFAULT_REACTIONS, **self.reactions}.get(state)
        return None if reaction in (None, "neutral") else reaction


class BedtimeLines(Strict):
    good_night: list[str] = Field(default_factory=list)
    reassurance: list[str] = Field(default_factory=list)
    presence: list[str] = Field(default_factory=list)
    last_good_night: list[str] = Field(default_factory=list)
    entering: list[str] = Field(default_factory=list)
    leaving: list[str] = Field(default_factory=list)


class PersonaConfig(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    display_name: str
    language: str = "ja"
    description: str = ""
    system_prompt: str
    speaking_style: str = ""
    voice: VoiceConfig
    #: Voices for replies in other languages, e.g. {en: {backend: piper, voice: ...}}.
    alt_voices: dict[str, VoiceConfig] = Field(default_factory=dict)
    avatar: AvatarConfig = Field(default_factory=AvatarConfig)
    #: A routing.yaml engine name; empty means the routing default.
    engine: str | None = None
    #: Phrases that switch to this persona by voice.
    switch_phrases: list[str] = Field(default_factory=list)
    bedtime: BedtimeLines = Field(default_factory=BedtimeLines)
    #: Short lines for moments the model cannot cover (engine starting, engine down).
    lines: dict[str, list[str]] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# routing.yaml
# --------------------------------------------------------------------------------------------------


class GenerationConfig(Strict):
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.9
    max_tokens: Annotated[int, Field(ge=1, le=8192)] = 256
    stop: list[str] = Field(default_factory=list)
    #: Server-specific sampling parameters sent as they are (vLLM: repetition_penalty, top_k, ignore_eos, ...).
    extra: dict[str, Any] = Field(default_factory=dict)


class VllmLaunchConfig(Strict):
    #: The Python of the environment that has vLLM (a venv's bin/python); default: the current one.
    python: str | None = None
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    dtype: str = "auto"
    max_model_len: Annotated[int, Field(ge=64)] = 4096
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.85
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    swap_space: Annotated[float, Field(ge=0)] = 4
    tensor_parallel_size: Annotated[int, Field(ge=1)] = 1
    max_num_seqs: Annotated[int, Field(ge=1)] = 8
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    #: Seconds to wait for /health after start.
    startup_timeout_s: Annotated[float, Field(gt=0)] = 600


class EngineConfig(Strict):
    kind: Literal["vllm", "openai", "ollama", "embedded"]
    #: For vllm/openai/ollama: the OpenAI-compatible base URL (…/v1).
    base_url: str | None = None
    #: The model name the server knows (vllm: served name), or for embedded a GGUF path / offline:NAME.
    model: str
    #: vllm: the weights to serve (a Hugging Face id or a local folder); default: model.
    model_path: str | None = None
    #: vllm: the Hugging Face repo `saijin models download` fetches into model_path's folder (and its revision).
    hub_id: str | None = None
    hub_revision: str | None = None
    api_key: str = "EMPTY"
    resident: bool = True
    #: on-demand engines stop after this many idle seconds.
    idle_stop_s: Annotated[float, Field(gt=0)] = 600
    timeout_s: Annotated[float, Field(gt=0)] = 30
    first_token_timeout_s: Annotated[float, Field(gt=0)] = 20
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    launch: VllmLaunchConfig | None = None
    #: embedded: llama.cpp context size and threads; ollama: keep_alive.
    n_ctx: Annotated[int, Field(ge=128)] = 2048
    n_threads: Annotated[int, Field(ge=0)] = 0
    #: embedded: a llama.cpp chat format, "transcript" (a written dialogue, best for base models) or
    #: "gemma" turns; null: the model's own chat template, else transcript.
    chat_format: str | None = None
    #: embedded: llama.cpp's penalty against repeating itself (small base models loop without it).
    repeat_penalty: Annotated[float, Field(ge=1, le=2)] = 1.15
    keep_alive: str = "10m"

    @model_validator(mode="after")
    def _kind_needs(self) -> EngineConfig:
        if self.kind != "embedded" and not self.base_url:
            raise ValueError(f"base_url is required for kind {self.kind}")
        if self.kind == "vllm" and self.launch is None:
            self.launch = VllmLaunchConfig()
        return self


class ManagerConfig(Strict):
    #: The sum of gpu_memory_utilization of running vLLM engines stays within this.
    vram_budget: Annotated[float, Field(gt=0, le=1)] = 0.95


class RoutingConfig(Strict):
    default: str
    engines: dict[str, EngineConfig] = Field(min_length=1)
    personas: dict[str, str] = Field(default_factory=dict)
    #: Engines tried in order when the chosen one fails before its first token.
    fallback: list[str] = Field(default_factory=list)
    manager: ManagerConfig = Field(default_factory=ManagerConfig)

    @model_validator(mode="after")
    def _names_exist(self) -> RoutingConfig:
        if self.default not in self.engines:
            raise ValueError(f"default: no engine named {self.default!r} (engines: {', '.join(self.engines)})")
        for persona, engine in self.personas.items():
            if engine not in self.engines:
                raise ValueError(f"personas.{persona}: no engine named {engine!r}")
        for engine in self.fallback:
            if engine not in self.engines:
                raise ValueError(f"fallback: no engine named {engine!r}")
        return self

    def engine_for(self, persona_id: str, persona_engine: str | None = None) -> str:
        return self.personas.get(persona_id) or persona_engine or self.default

    def chain_for(self, persona_id: str, persona_engine: str | None = None) -> list[str]:
        """The engine a persona uses, then the fallback engines, each once."""
        chain = [self.engine_for(persona_id, persona_engine)]
        chain += [name for name in self.fallback if name not in chain]
        return chain
