"""The end-to-end latency benchmark: sample utterances through the real voice pipeline, one turn at a time.

Each turn plays one sample WAV into the pipeline in real time (like a microphone), waits until the reply has
been played to a real-time null sink, and records every stage's timestamps from the bus. From those come
p50/p95 per stage, voice to voice, the pipeline's own overhead and the first-audio ratio.

Definitions (also in docs/benchmarks.md):
- voice to voice: the real end of the user's speech -> the first sample of the reply played.
- pipeline overhead: the part of that window in which no stage is working on the turn, i.e. voice to voice
  minus the length of the union of the stage intervals on the critical path (VAD hangover, ASR, emotion,
  prompt, LLM up to the first sentence, TTS of the first sentence), each clipped to the window. What is left
  is event hand-offs, queues, thread hops and the output stage starting the sink.
- first-audio ratio: (first audio ready - end of speech) / (last sentence's audio ready - end of speech),
  over replies of two or more spoken sentences only (a one-sentence reply has ratio 1 by definition).
- ready after start: from starting the pipeline until its warm-up is done (models loaded, the persona's
  prompt evaluated) — when `saijin run` says "ready".
- first turn after start: the first turn the pipeline answered after it was ready (a warm-up turn when
  there are any), per language: how far it is from the median shows what start-up warming still misses.

Every figure is given per language (ja, en) and over both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.resample import TARGET_RATE
from assistant.audio.sources import paced_frames
from assistant.bench.samples import LANGUAGES, Sample, bench_specs, sample_utterances, turns
from assistant.config.loader import Settings
from assistant.config.schema import VoiceConfig
from assistant.errors import SaijinError, UsageError
from assistant.events import (
    Audio,
    Event,
    Interrupted,
    PlaybackStarted,
    ReplyDone,
    StageTiming,
    TurnDone,
    TurnDropped,
    UserSpeechEnded,
    UserSpeechStarted,
    UserTranscript,
    now,
)
from assistant.pipeline.assemble import Conversation, Options
from assistant.stage import Stage

log = logging.getLogger(__name__)

#: The stages reported, in the order they happen on a turn (the LatencyObserver's names).
STAGES = ("end_of_speech", "asr_wait", "asr", "transcript", "emotion", "prompt", "llm_first_token", "first_sentence",
          "tts_first_audio", "playback_start")
#: Stages whose intervals make up the work on the critical path; the LLM counts up to its first sentence
#: (first_sentence, which starts with the request). playback_start is the pipeline's own: the output stage
#: handing the first block to the sink. asr_wait: the ASR worker was still busy with an earlier
#: (superseded) speculative job.
WORK_STAGES = ("end_of_speech", "asr_wait", "asr", "emotion", "prompt", "first_sentence", "tts_first_audio")


# ------------------------------------------------------------------------------------------------
# Feeding the pipeline
# ------------------------------------------------------------------------------------------------


class TurnFeed(Stage):
    """A microphone stand-in: ``play(samples)`` sends one utterance as AudioFrames in real time, each stamped
    with the moment its last sample is due (as WavSource does), and returns when it has all been sent.
    Not ``realtime``: as fast as possible, stamped when sent."""

    def __init__(self, frame_ms: int = 20, realtime: bool = True) -> None:
        super().__init__()
        self.frame_len = TARGET_RATE * frame_ms // 1000
        self.is_realtime = realtime

    async def play(self, samples: np.ndarray) -> None:
        async for frame in paced_frames(samples, self.frame_len, self.is_realtime):
            self.emit(frame)


def bench_conversation(settings: Settings, options: Options) -> Conversation:
    """The real voice conversation, heard through a :class:`TurnFeed` and played to a NullSink; both keep
    real time unless ``options.is_realtime`` is False (the soak test)."""
    from assistant.audio.sinks import NullSink

    feed = TurnFeed(settings.assistant.vad.frame_ms, realtime=options.is_realtime)
    sink = NullSink(realtime=options.is_realtime)
    return Conversation(settings, dataclasses.replace(options, source=feed, sink=sink))


def _feed_of(conversation: Conversation) -> TurnFeed:
    if not isinstance(conversation.options.source, TurnFeed):
        raise UsageError("the bench plays its samples into a conversation made by bench_conversation()")
    return conversation.options.source


# ------------------------------------------------------------------------------------------------
# What one turn did, from the bus
# ------------------------------------------------------------------------------------------------


@dataclass
class TurnTimeline:
    """The absolute timestamps (monotonic seconds) of one turn, as seen on the bus."""

    turn_id: int
    speech_end: float | None = None
    decided_at: float | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    first_audio_at: float | None = None
    last_audio_at: float | None = None
    first_play_at: float | None = None
    audio_count: int = 0
    sentence_count: int | None = None
    heard: str = ""
    #: When the words were known (the user-transcript event).
    transcript_at: float | None = None
    language: str = ""
    reply: str = ""
    outcome: str = ""  # done | dropped | interrupted

    @property
    def is_measured(self) -> bool:
        return self.outcome == "done" and self.speech_end is not None and self.first_play_at is not None

    def rel(self, moment: float) -> float:
        assert self.speech_end is not None
        return (moment - self.speech_end) * 1000.0

    def stage_intervals(self) -> dict[str, tuple[float, float]]:
        """Each reported stage's (start, end) in ms from the real end of speech."""
        assert self.speech_end is not None
        out: dict[str, tuple[float, float]] = {}
        if self.decided_at is not None:
            out["end_of_speech"] = (0.0, self.rel(self.decided_at))
        if self.transcript_at is not None:
            out["transcript"] = (0.0, self.rel(self.transcript_at))
        for name in ("asr_wait", "asr", "emotion", "prompt", "llm_first_token", "first_sentence", "tts_first_audio"):
            start_end = self.intervals.get(name)
            if start_end is None and name == "first_sentence":
                # The only sentence came when the stream ended (no sentence end before it): the whole stream.
                start_end = self.intervals.get("llm_total")
            if start_end is not None:
                out[name] = (self.rel(start_end[0]), self.rel(start_end[1]))
        if self.first_audio_at is not None and self.first_play_at is not None:
            out["playback_start"] = (self.rel(self.first_audio_at), self.rel(self.first_play_at))
        return out

    def work_intervals(self) -> list[tuple[float, float]]:
        """The stage work on the critical path, in ms from the end of speech."""
        spans = self.stage_intervals()
        return [spans[name] for name in WORK_STAGES if name in spans]

    @property
    def voice_to_voice_ms(self) -> float:
        assert self.first_play_at is not None
        return self.rel(self.first_play_at)

    def gaps(self) -> list[tuple[float, float]]:
        """The parts of [end of speech, first audio played] where no stage was working (ms)."""
        window = self.voice_to_voice_ms
        merged: list[list[float]] = []
        for start, end in sorted((max(0.0, s), min(window, e)) for s, e in self.work_intervals()):
            if end <= start:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        gaps, cursor = [], 0.0
        for start, end in merged:
            if start > cursor:
                gaps.append((cursor, start))
            cursor = max(cursor, end)
        if cursor < window:
            gaps.append((cursor, window))
        return gaps

    @property
    def overhead_ms(self) -> float:
        return sum(end - start for start, end in self.gaps())

    @property
    def first_audio_ratio(self) -> float | None:
        if self.first_audio_at is None or self.last_audio_at is None or self.speech_end is None:
            return None
        whole = self.last_audio_at - self.speech_end
        return (self.first_audio_at - self.speech_end) / whole if whole > 0 else None

    @property
    def multi_sentence_ratio(self) -> float | None:
        """The first-audio ratio of a reply of two or more sentences; None for a one-sentence reply."""
        return self.first_audio_ratio if (self.sentence_count or 0) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        spans = self.stage_intervals()
        return {
            "turn_id": self.turn_id, "language": self.language, "heard": self.heard, "reply": self.reply,
            "sentences": self.sentence_count,
            "voice_to_voice_ms": round(self.voice_to_voice_ms, 1),
            "overhead_ms": round(self.overhead_ms, 2),
            "first_audio_ratio": _round(self.multi_sentence_ratio, 3),
            "stages_ms": {name: round(end - start, 1) for name, (start, end) in spans.items()},
            "intervals_ms": {name: [round(start, 1), round(end, 1)] for name, (start, end) in spans.items()},
            "gaps_ms": [[round(start, 2), round(end, 2)] for start, end in self.gaps()],
            "first_audio_ms": _round(self.rel(self.first_audio_at) if self.first_audio_at else None, 1),
            "last_audio_ms": _round(self.rel(self.last_audio_at) if self.last_audio_at else None, 1),
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class TimelineRecorder:
    """A bus observer that keeps a :class:`TurnTimeline` per turn and tells when a turn has ended."""

    def __init__(self) -> None:
        self.turns: dict[int, TurnTimeline] = {}
        self._ended: dict[int, asyncio.Event] = {}

    def ended(self, turn_id: int) -> asyncio.Event:
        return self._ended.setdefault(turn_id, asyncio.Event())

    def forget_ended(self) -> None:
        """Drop the turns that have ended (a long run keeps only what is in flight)."""
        for turn_id in [t for t, e in self._ended.items() if e.is_set()]:
            self.turns.pop(turn_id, None)
            del self._ended[turn_id]

    def __call__(self, event: Event) -> None:
        turn_id = event.turn
        if turn_id is None:
            return
        timeline = self.turns.setdefault(turn_id, TurnTimeline(turn_id))
        if isinstance(event, UserSpeechStarted):
            self.ended(turn_id)
        elif isinstance(event, UserSpeechEnded):
            timeline.speech_end, timeline.decided_at = event.speech_end, event.decided_at
        elif isinstance(event, UserTranscript):
            timeline.heard, timeline.language = event.text, event.language
            timeline.transcript_at = timeline.transcript_at or now()
        elif isinstance(event, StageTiming):
            name = "tts_first_audio" if event.stage == "tts" else event.stage
            timeline.intervals.setdefault(name, (event.started_at, event.ended_at))
        elif isinstance(event, Audio):
            at = now()
            timeline.first_audio_at = timeline.first_audio_at or at
            timeline.last_audio_at = at
            timeline.audio_count += 1
        elif isinstance(event, ReplyDone):
            timeline.sentence_count, timeline.reply = event.sentence_count, event.text
        elif isinstance(event, PlaybackStarted) and timeline.first_play_at is None:
            timeline.first_play_at = event.at
        elif isinstance(event, TurnDone | TurnDropped | Interrupted):
            if not timeline.outcome:
                timeline.outcome = {TurnDone: "done", TurnDropped: "dropped"}.get(type(event), "interrupted")
            self.ended(turn_id).set()


# ------------------------------------------------------------------------------------------------
# Running it
# ------------------------------------------------------------------------------------------------


@dataclass
class BenchOptions:
    """How a benchmark runs (from the command line)."""

    turns: int = 10
    warmup: int | None = None  # None: one turn per language
    persona: str | None = None
    llm_url: str | None = None
    llm_model: str | None = None
    events_path: Path | None = None
    turn_timeout_s: float = 180.0
    samples_cache: Path | None = None
    #: Which samples are spoken: "ja", "en" or "both" (taking turns).
    language: str = "both"
    #: Another ASR model than the profile's (a faster-whisper name, a path, offline:whisper-tiny.en).
    asr_model: str | None = None
    #: Other voices than the personas': language ("" for every language) -> a voice (see ``parse_voice``).
    voices: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchRun:
    """Everything one benchmark run measured."""

    timelines: list[TurnTimeline]
    skipped: list[TurnTimeline]
    machine: dict[str, Any]
    samples: list[Sample]
    #: The turns answered right after start (the warm-up turns, or the first measured one without warm-up).
    first_turns: list[TurnTimeline] = field(default_factory=list)


def isolated(settings: Settings, data_dir: Path) -> Settings:
    """The same settings with state (memory database, latency log) in ``data_dir``, so a benchmark never
    writes into the user's memory."""
    a = settings.assistant
    memory = a.memory.model_copy(update={"database": str(data_dir / "memory.db")})
    return dataclasses.replace(settings, assistant=a.model_copy(update={"data_dir": str(data_dir), "memory": memory}))


def is_english_only(asr_model: str) -> bool:
    """Whisper's ``.en`` models (tiny.en, offline:whisper-tiny.en, a folder named so) hear English only."""
    return Path(asr_model.rstrip("/")).name.lower().endswith(".en")


def parse_voice(spec: str) -> VoiceConfig:
    """A ``--voice`` value -> a voice config: ``offline:joe-us``, ``piper:NAME|PATH.onnx``, ``kokoro:jf_alpha``,
    ``vits:PATH``, or a bare Piper voice name / .onnx path (a bare jf_/jm_ id is a Kokoro voice)."""
    from assistant.models.offline import OFFLINE_MODELS, PREFIX

    backend, _, rest = spec.partition(":")
    if spec.startswith(PREFIX):
        model = OFFLINE_MODELS.get(spec.removeprefix(PREFIX))
        if model is None or model.kind not in ("piper", "kokoro", "vits"):
            voices = ", ".join(PREFIX + name for name, m in OFFLINE_MODELS.items() if m.kind in ("piper", "kokoro"))
            raise UsageError(f"--voice {spec}: not an offline voice — known: {voices}")
        return VoiceConfig(backend=model.kind, voice=spec)  # type: ignore[arg-type]
    if backend in ("piper", "kokoro", "vits") and rest:
        return VoiceConfig(backend=backend, voice=rest)  # type: ignore[arg-type]
    if spec.startswith(("jf_", "jm_")):
        return VoiceConfig(backend="kokoro", voice=spec)
    if not spec:
        raise UsageError("--voice needs a voice, e.g. offline:joe-us, piper:en_US-lessac-medium or kokoro:jf_alpha")
    return VoiceConfig(backend="piper", voice=spec)


def _with_voices(persona: Any, voices: dict[str, VoiceConfig]) -> Any:
    """``persona`` speaking with ``voices`` (key "" replaces every voice; a language key replaces that one)."""
    main, alt = persona.voice, dict(persona.alt_voices)
    if "" in voices:
        main, alt = voices[""], {}
    own = persona.language.split("-")[0].lower()
    for language, voice in voices.items():
        if language == own:
            main = voice
        elif language:
            alt[language] = voice
    return persona.model_copy(update={"voice": main, "alt_voices": alt})


def configured(settings: Settings, options: BenchOptions) -> Settings:
    """The settings with the bench's overrides: ``--asr-model`` (an English-only model listens for English)
    and ``--voice`` (every persona speaks with it)."""
    a = settings.assistant
    if options.asr_model:
        update: dict[str, Any] = {"model": options.asr_model}
        if is_english_only(options.asr_model):
            update["language"] = "en"
        a = a.model_copy(update={"asr": a.asr.model_copy(update=update)})
    personas = settings.personas
    if options.voices:
        voices = {language: parse_voice(spec) for language, spec in options.voices.items()}
        personas = {pid: _with_voices(persona, voices) for pid, persona in personas.items()}
    return dataclasses.replace(settings, assistant=a, personas=personas)


def bench_language(options: BenchOptions) -> str:
    """The samples' language: as asked; an English-only ASR model cannot hear Japanese samples."""
    if options.asr_model and is_english_only(options.asr_model) and options.language != "en":
        raise UsageError(f"--asr-model {options.asr_model} hears English only — add --language en")
    return options.language


async def play_turn(conversation: Conversation, recorder: TimelineRecorder, sample: Sample,
                    timeout: float) -> list[TurnTimeline]:
    """Play one sample and wait until every turn it opened has ended; the turns it opened."""
    before = set(recorder.turns)
    await _feed_of(conversation).play(sample.samples())
    opened = sorted(t for t in recorder.turns if t not in before)
    if not opened:
        raise SaijinError(f"the VAD heard no speech in {sample.path} — is the sample silent?")
    try:
        for turn_id in opened:
            await asyncio.wait_for(recorder.ended(turn_id).wait(), timeout)
    except TimeoutError:
        raise SaijinError(f"turn {opened[-1]} did not finish within {timeout:.0f} s — the pipeline is stuck "
                          f"or far too slow on this machine (see -v)") from None
    await conversation.pipeline.wait_idle()
    return [recorder.turns[t] for t in opened]


async def run_bench(settings: Settings, options: BenchOptions,
                    progress: Callable[[int, int, TurnTimeline | None], None] | None = None) -> BenchRun:
    """Warm up, then run ``options.turns`` measured turns (alternating the samples) through the pipeline."""
    specs = bench_specs(bench_language(options))
    samples = await asyncio.to_thread(sample_utterances, options.samples_cache, specs)
    warmup = len({s.language for s in samples}) if options.warmup is None else options.warmup
    measured: list[TurnTimeline] = []
    skipped: list[TurnTimeline] = []
    first_turns: list[TurnTimeline] = []
    with tempfile.TemporaryDirectory(prefix="saijin-bench-") as folder:
        bench_settings = isolated(configured(settings, options), Path(folder))
        conv_options = Options(persona=options.persona, input="feed", output="file", llm_url=options.llm_url,
                               llm_model=options.llm_model, events_path=options.events_path, is_realtime=True,
                               use_memory=True, start_engines=True)
        conversation = bench_conversation(bench_settings, conv_options)
        recorder = TimelineRecorder()
        conversation.bus.subscribe(recorder)
        started = time.monotonic()
        async with conversation:
            # As `saijin run` does at start (it says "ready" then): load the engine, evaluate the prefix.
            await conversation.warm_up()
            ready_s = time.monotonic() - started
            for index, sample in enumerate(turns(samples, warmup)):
                opened = await play_turn(conversation, recorder, sample, options.turn_timeout_s)
                first_turns += [t for t in opened if t.is_measured][-1:]
                if progress is not None:
                    progress(-(index + 1), warmup, None)  # negative: a warm-up turn
            load_before = os.getloadavg()
            for index, sample in enumerate(turns(samples, options.turns)):
                opened = await play_turn(conversation, recorder, sample, options.turn_timeout_s)
                done = [t for t in opened if t.is_measured]
                skipped += [t for t in opened if not t.is_measured]
                measured += done[-1:]
                if progress is not None:
                    progress(index + 1, options.turns, done[-1] if done else None)
            load_after = os.getloadavg()
            # A background summary still generating when the engine closes can crash llama.cpp: let it end.
            from assistant.bench.soak import settle

            await settle(conversation)
        machine = machine_info(bench_settings, conversation, options)
        machine["ready_s"] = round(ready_s, 1)
        machine["load_average"] = {"before": [round(x, 2) for x in load_before],
                                   "after": [round(x, 2) for x in load_after]}
    if not first_turns:
        first_turns = measured[:1]
    return BenchRun(timelines=measured, skipped=skipped, machine=machine, samples=samples, first_turns=first_turns)


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50 and p95 (linear interpolation), or None without values."""
    if not values:
        return None
    array = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(array, 50)), 2), "p95": round(float(np.percentile(array, 95)), 2)}


def median_turn(timelines: Sequence[TurnTimeline]) -> TurnTimeline | None:
    """The turn whose voice to voice is the median (the lower one of the middle two)."""
    if not timelines:
        return None
    ordered = sorted(timelines, key=lambda t: t.voice_to_voice_ms)
    return ordered[(len(ordered) - 1) // 2]


def figures(timelines: Sequence[TurnTimeline], first: TurnTimeline | None = None) -> dict[str, Any]:
    """p50/p95 of voice to voice, each stage, the overhead and the first-audio ratio (2+ sentence replies)
    over ``timelines``; the first turn after start beside them."""
    stages: dict[str, dict[str, float]] = {}
    for name in STAGES:
        values = [t.stage_intervals()[name] for t in timelines if name in t.stage_intervals()]
        found = percentiles([end - start for start, end in values])
        if found is not None:
            stages[name] = {**found, "turns": len(values)}
    multi = [r for t in timelines if (r := t.multi_sentence_ratio) is not None]
    middle = median_turn(timelines)
    return {
        "turns": len(timelines),
        "voice_to_voice_ms": percentiles([t.voice_to_voice_ms for t in timelines]),
        "first_turn_ms": round(first.voice_to_voice_ms, 1) if first is not None else None,
        "first_turn_id": first.turn_id if first is not None else None,
        "stages_ms": stages,
        "overhead_ms": percentiles([t.overhead_ms for t in timelines]),
        "first_audio_ratio": percentiles(multi),
        "multi_sentence_turns": len(multi),
        "median_turn": middle.turn_id if middle is not None else None,
    }


def by_language(run: BenchRun) -> dict[str, dict[str, Any]]:
    """``figures`` for each language measured, and for "both" when there are two."""
    out: dict[str, dict[str, Any]] = {}
    for language in LANGUAGES:
        mine = [t for t in run.timelines if t.language == language]
        if mine:
            first = next((t for t in run.first_turns if t.language == language), None)
            out[language] = figures(mine, first)
    if len(out) != 1:
        out["both"] = figures(run.timelines, run.first_turns[0] if run.first_turns else None)
    return out


def summarize(run: BenchRun) -> dict[str, Any]:
    """The benchmark's JSON: p50/p95 per stage, voice to voice, overhead, first-audio ratio (over replies of
    two or more sentences), the first turn after start, machine, turns; all of it also per language."""
    everything = figures(run.timelines, run.first_turns[0] if run.first_turns else None)
    return {
        **everything,
        "skipped_turns": [{"turn_id": t.turn_id, "outcome": t.outcome, "heard": t.heard} for t in run.skipped],
        "languages": by_language(run),
        "first_turns": [t.to_dict() for t in run.first_turns],
        "machine": run.machine,
        "samples": [{"language": s.language, "text": s.text, "path": str(s.path)} for s in run.samples],
        "per_turn": [t.to_dict() for t in run.timelines],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(settings: Settings, conversation: Conversation, options: BenchOptions) -> dict[str, Any]:
    """What the figures came from: the machine, the profile and every model on the path."""
    import psutil

    from assistant.threads import budgets

    a = settings.assistant
    persona = settings.persona(conversation.persona_id)
    llm: dict[str, Any]
    if options.llm_url:
        llm = {"engine": "override", "kind": "openai", "base_url": options.llm_url, "model": options.llm_model}
    else:
        name = conversation.router.chain(persona)[0]
        engine = settings.routing.engines[name]
        llm = {"engine": name, "kind": engine.kind, "model": engine.model,
               "max_tokens": engine.generation.max_tokens}
    voices = {persona.language: f"{persona.voice.backend}:{persona.voice.voice}"}
    voices.update({lang: f"{v.backend}:{v.voice}" for lang, v in persona.alt_voices.items()})
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "profile": settings.profile,
        "persona": persona.id,
        "models": {
            "vad": f"webrtcvad (aggressiveness {a.vad.aggressiveness}, hangover {a.vad.hangover_ms} ms)",
            "asr": f"{a.asr.model} ({a.asr.device}, {a.asr.compute_type}, language {a.asr.language}, "
                   f"speculative {a.asr.speculative})",
            "emotion": (f"{a.emotion.backend}" + (f" {a.emotion.model}" if a.emotion.backend != "prosody" else ""))
                       if a.emotion.enabled else "off",
            "llm": llm,
            "tts": voices,
        },
        "sink": "NullSink (real time)",
        "threads": budgets(),
        "language": options.language,
    }

