"""The wiring: which stages a conversation runs, in which order, with which backends. The only module
that knows how the stages fit together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from assistant.config.loader import Settings
from assistant.conversation.reply import ReplyStage
from assistant.conversation.responders import PersonaSwitch, Responder
from assistant.conversation.session import SessionStage, remember_in
from assistant.conversation.turns import TurnController
from assistant.errors import SaijinError, UsageError
from assistant.events import (
    Error,
    Event,
    Interrupted,
    Latency,
    Notice,
    PlaybackFinished,
    PlaybackStarted,
    Subtitle,
    TextInput,
    TurnDone,
    TurnDropped,
    UserEmotion,
    UserTranscript,
)
from assistant.llm.engine import ChatEngine, Prefills
from assistant.llm.router import EngineRouter, override_routing
from assistant.modes.bedtime import BedtimeResponder, BedtimeStage
from assistant.modes.schedule import startup_mode
from assistant.observers.events_log import EventsLog
from assistant.observers.latency import LatencyObserver
from assistant.observers.prefill import NextRequestPrefill
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from assistant.stage import Stage
from assistant.state import AppState

if TYPE_CHECKING:
    from assistant.audio.sinks import AudioSink
    from assistant.memory.conversation import PersonaMemory
    from assistant.memory.store import Turn
    from assistant.ops.manager import EngineManager
    from live2d_bridge.server import BridgeServer

log = logging.getLogger(__name__)

#: text: typed only; mic; browser (the page's microphone through the bridge); file (a WAV);
#: feed (audio handed to ``Conversation.hear`` by the demo, the bench and tests).
#: How many turns' results a conversation keeps (memory holds the history; these are for the caller).
KEEP_RESULTS = 256

InputKind = Literal["text", "mic", "browser", "file", "feed"]
OutputKind = Literal["none", "speaker", "browser", "file"]


@dataclass
class Options:
    """How a conversation runs: set from the command line."""

    persona: str | None = None
    mode: str | None = None
    input: InputKind = "text"
    input_path: Path | None = None
    output: OutputKind = "none"
    output_path: Path | None = None
    llm_url: str | None = None
    llm_model: str | None = None
    events_path: Path | None = None
    with_bridge: bool = False
    #: Pace file input and output in real time (like a person and a speaker) or run as fast as possible.
    is_realtime: bool = True
    #: Write memory to the configured database (False: keep the conversation in process only).
    use_memory: bool = True
    #: Start the resident engines of routing.yaml with the conversation (long-running commands).
    start_engines: bool = False
    #: A source stage made by the caller (the bench's microphone stand-in), used instead of ``input``'s.
    source: Stage | None = None
    #: A sink made by the caller, used instead of ``output``'s (the output must not be "none").
    sink: AudioSink | None = None


@dataclass
class TurnResult:
    """What one turn produced, collected from the bus."""

    turn_id: int
    heard: str = ""
    emotion: str | None = None
    persona: str = ""
    sentences: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    latency: Latency | None = None
    is_interrupted: bool = False
    is_dropped: bool = False

    @property
    def reply(self) -> str:
        return "".join(s if not s[-1:].isascii() else s + " " for s in self.sentences).strip()


class Conversation:
    """A running conversation: the pipeline, its bus and observers, and handles to feed it."""

    def __init__(self, settings: Settings, options: Options) -> None:
        self.settings = settings
        self.options = options
        self.bus = Bus()
        self.manager: EngineManager | None = None
        self.router = self._router()
        self.memory: PersonaMemory | None = self._memory() if options.use_memory else None
        self.bridge: BridgeServer | None = None
        self.source: Stage | None = None
        self._closers: list[Callable[[], object]] = []
        self.latency = LatencyObserver(self.bus.publish, settings.data_dir / "latency.jsonl")
        self.bus.subscribe(self.latency)
        if options.events_path is not None:
            events_log = EventsLog(options.events_path)
            self.bus.subscribe(events_log)
            self._closers.append(events_log.close)
        # The persona chosen last time and a bedtime still inside its window survive a restart.
        self.state = AppState.in_data_dir(settings.data_dir)
        remembered = self.state.persona if self.state.persona in settings.personas else None
        persona_id = options.persona or remembered or settings.assistant.persona
        settings.persona(persona_id)  # a clear error for an unknown persona
        self.persona_id = persona_id
        self.mode = startup_mode(settings.assistant.bedtime, self.state, datetime.now(), options.mode)
        a = settings.assistant
        self.turns = TurnController(a.barge_in, a.bedtime.barge_in_min_speech_ms, turns=a.turns, vad=a.vad)
        self.bedtime = BedtimeResponder(settings.personas, settings.assistant.bedtime)
        from assistant.audio.echo import make_echo_canceller

        self.echo = make_echo_canceller(a.barge_in.echo_cancellation, options.input == "mic", options.output == "speaker")
        self.pipeline = Pipeline(self._stages(), self.bus)
        self._results: dict[int, TurnResult] = {}
        self._finished: dict[int, asyncio.Event] = {}
        self._new_turn = asyncio.Event()
        self.bus.subscribe(self._collect)
        self.prefill = NextRequestPrefill(self._prefill_next_request)
        self.bus.subscribe(self.prefill)

    # ------------------------------------------------------------------ building

    def _router(self) -> EngineRouter:
        if self.options.llm_url:
            return EngineRouter(override_routing(self.options.llm_url, self.options.llm_model))
        if self.options.llm_model:
            raise UsageError("--llm-model needs --llm-url (the server to ask)")
        from assistant.ops.manager import EngineManager

        self.manager = EngineManager(self.settings)
        return EngineRouter(self.settings.routing, self.settings.config_dir, starter=self.manager)

    def _memory(self) -> PersonaMemory:
        """The memory database, with summaries written by each persona's own engine in the background."""
        from assistant.llm.summary import engine_summarizer
        from assistant.memory.conversation import PersonaMemory

        settings, router = self.settings, self.router

        async def summarize(persona: str, turns: list[Turn], previous: str | None) -> str:
            config = settings.persona(persona)
            name = router.chain(config)[0]
            engine = router.engine(name)
            generation = router.routing.engines[name].generation
            return await engine_summarizer(engine, generation, config.language)(persona, turns, previous)

        return PersonaMemory.from_settings(settings, summarize)

    def _responders(self) -> list[Responder]:
        # Bedtime first: while asleep, nothing but a wake phrase is answered (not even a persona switch).
        return [self.bedtime, PersonaSwitch(self.settings.personas)]

    def _stages(self) -> list[Stage]:
        """Session, bridge, input, VAD, turns, understanding, reply, speech, output — in start order."""
        settings, options = self.settings, self.options
        is_voiced = options.output != "none"
        stages: list[Stage] = [SessionStage(settings.personas, self.persona_id, self.mode,
                                            remember=remember_in(self.state, self.mode))]
        if options.with_bridge or options.input == "browser" or options.output == "browser":
            stages.append(self._bridge_stage())
        if options.input != "text":
            if options.input != "browser":  # the bridge itself emits the page's microphone frames
                stages.append(self._source())
            stages.append(self._vad())
        stages.append(self.turns)
        # The bedtime stage alone decides sleep; its responder follows the Sleeping events on the bus.
        self.bus.subscribe(self.bedtime.observe)
        stages.append(BedtimeStage(settings.assistant.bedtime, settings.personas, self.persona_id, mode=self.mode))
        if options.input != "text":
            stages.append(self._understand())
        stages.append(ReplyStage(settings.rules, settings.personas, self.persona_id, self.router, self.memory,
                                 mode=self.mode, responders=self._responders(), is_voiced=is_voiced))
        if is_voiced:
            from assistant.audio.output_stage import OutputStage
            from assistant.tts.speech_stage import SpeechStage

            stages += [SpeechStage(settings.personas, settings.assistant.tts), OutputStage(self._sink())]
        return stages

    def _bridge_stage(self) -> Stage:
        from live2d_bridge.server import BridgeServer
        from live2d_bridge.stage import BridgeStage

        settings = self.settings
        self.bridge = BridgeServer(settings.assistant.bridge, list(settings.personas.values()), on_input=lambda e: None,
                                   base_dir=settings.config_dir, persona=self.persona_id, mode=self.mode,
                                   send_audio=settings.assistant.tts.send_audio_to_page,
                                   sleep_after_s=settings.assistant.bedtime.sleep_after_min * 60.0)
        self.bus.subscribe(self.bridge.publish)
        # The output stage keeps the playback clock (also for the page, through a null sink); the page's own
        # playback reports would count every sentence twice.
        return BridgeStage(self.bridge, ignore=(PlaybackStarted, PlaybackFinished))

    def _source(self) -> Stage:
        from assistant.audio.sources import MicSource, PcmFeedSource, WavSource

        options, audio = self.options, self.settings.assistant.audio
        frame_ms = self.settings.assistant.vad.frame_ms
        if options.source is not None:
            self.source = options.source
        elif options.input == "file":
            assert options.input_path is not None
            self.source = WavSource(options.input_path, realtime=options.is_realtime, frame_ms=frame_ms,
                                    max_seconds=audio.max_file_input_s)
        elif options.input == "mic":
            self.source = MicSource(audio.input_device, frame_ms=frame_ms, echo=self.echo)
        else:
            self.source = PcmFeedSource(frame_ms=frame_ms)
        return self.source

    async def hear(self, samples: np.ndarray, sample_rate: int, is_realtime: bool = True) -> list[TurnResult]:
        """Play audio into a ``feed`` conversation as a person speaking (in real time by default) and wait
        until every turn it opened is done. The audio should end with a second of silence."""
        from assistant.audio.sources import PcmFeedSource

        if not isinstance(self.source, PcmFeedSource):
            raise UsageError("hear() needs a conversation with input 'feed'")
        loop = asyncio.get_running_loop()
        before = max(self._results, default=0)
        step = max(1, sample_rate // 50)
        started = loop.time()
        for begin in range(0, len(samples), step):
            self.source.feed(np.asarray(samples[begin:begin + step], dtype=np.float32))
            delay = started + (begin + step) / sample_rate - loop.time() if is_realtime else 0.0
            await asyncio.sleep(max(0.0, delay))
        while True:
            await self.pipeline.wait_idle()
            opened = [t for t in self._results if t > before]
            if all(self._finished[t].is_set() for t in opened):
                return [self._results[t] for t in sorted(opened)]
            await asyncio.sleep(0.05)  # a turn finishing after the pipeline went idle (a timer)

    def _vad(self) -> Stage:
        from assistant.audio.vad import VadStage

        a = self.settings.assistant
        # Adaptive end of turn: each pause is recognised at once, and the VAD waits for its words.
        return VadStage(a.vad, a.barge_in, a.bedtime, wait_for_words=a.asr.speculative,
                        probe_language=a.asr.probes_language)

    def _understand(self) -> Stage:
        from assistant.speech.emotion import make_emotion_tagger
        from assistant.speech.transcriber import make_transcriber
        from assistant.speech.understand import UnderstandStage

        a = self.settings.assistant
        return UnderstandStage(make_transcriber(a.asr), make_emotion_tagger(a.emotion), a.asr, a.emotion, a.bedtime)

    def _sink(self) -> AudioSink:
        from assistant.audio.sinks import NullSink, SpeakerSink, WavFileSink

        options = self.options
        if options.sink is not None:
            return options.sink
        if options.output == "file":
            assert options.output_path is not None
            return WavFileSink(options.output_path, realtime=options.is_realtime)
        if options.output == "speaker":
            audio = self.settings.assistant.audio
            return SpeakerSink(audio.output_device, latency_ms=audio.output_latency_ms, echo=self.echo)
        # The page plays the audio; the null sink keeps time so turns end when the page has played them.
        return NullSink(realtime=True)

    # ------------------------------------------------------------------ running

    async def __aenter__(self) -> Conversation:
        if self.manager is not None and self.options.start_engines:
            for name, problem in (await self.manager.start()).items():
                self.bus.publish(Notice(message=f"{name} did not start: {problem}"))
        await self.pipeline.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.pipeline.close()
        await self.prefill.wait()
        if self.manager is not None:
            await self.manager.stop()
        if self.memory is not None:
            await self.memory.aclose()
        await self.router.aclose()
        for close in self._closers:
            close()

    def emit(self, event: Event) -> None:
        self.pipeline.emit(event)

    async def warm_up(self) -> None:
        """Before the first turn: load the current persona's engine and let it evaluate what every request of
        this persona starts with (the system message and the conversation so far), and open the connection
        of an OpenAI-compatible engine — so the first turn is as fast as the later ones. Nothing is added to
        the conversation (a one-token request; its reply is dropped)."""
        from assistant.config.schema import GenerationConfig

        reply = self._reply_stage()
        if reply is None:
            return
        engine = self._engine_of(self.persona_id)
        messages = await reply.prompt_prefix(self.persona_id)
        try:
            async for _ in engine.stream(messages, GenerationConfig(max_tokens=1, temperature=0.0)):
                pass
        except SaijinError as exc:
            log.info("warm-up of %s failed: %s", engine.name, exc)

    async def _prefill_next_request(self) -> None:
        """While the user speaks: the current persona's engine reads what its next request starts with."""
        reply = self._reply_stage()
        if reply is None:
            return
        engine = self._engine_of(reply.persona_id)
        if isinstance(engine, Prefills):
            await engine.prefill(await reply.prompt_prefix())

    def _reply_stage(self) -> ReplyStage | None:
        return next((s for s in self.pipeline.stages if isinstance(s, ReplyStage)), None)

    def _engine_of(self, persona_id: str) -> ChatEngine:
        """The engine ``persona_id``'s requests go to first (its routed engine, before any fallback)."""
        return self.router.engine(self.router.chain(self.settings.persona(persona_id))[0])

    async def say(self, text: str, timeout: float | None = None) -> TurnResult:
        """Type a line and wait until its turn is done (answered, dropped, failed or interrupted)."""
        async def answered() -> TurnResult:
            before = set(self._results)
            self._new_turn.clear()
            self.emit(TextInput(text=text))
            # The typed turn is the new one that heard this text (a bedtime presence line may open another).
            while not (new := [t for t in self._results if t not in before and self._results[t].heard == text.strip()]):
                await self._new_turn.wait()
                self._new_turn.clear()
            return await self.wait_turn(min(new))

        return await asyncio.wait_for(answered(), timeout)

    async def wait_turn(self, turn_id: int, timeout: float | None = None) -> TurnResult:
        await asyncio.wait_for(self._turn_finished(turn_id).wait(), timeout)
        return self._results[turn_id]

    def _forget_old_results(self, keep: int = KEEP_RESULTS) -> None:
        """A long-running conversation keeps the results of its recent turns only (finished ones go first)."""
        if len(self._results) <= keep:
            return
        for old in sorted(self._results)[: len(self._results) - keep]:
            if self._finished[old].is_set():
                del self._results[old]
                del self._finished[old]

    def _turn_finished(self, turn_id: int) -> asyncio.Event:
        return self._finished.setdefault(turn_id, asyncio.Event())

    def result(self, turn_id: int) -> TurnResult | None:
        return self._results.get(turn_id)

    @property
    def results(self) -> list[TurnResult]:
        return [self._results[t] for t in sorted(self._results)]

    def _collect(self, event: Event) -> None:
        turn_id = event.turn
        if turn_id is None:
            return
        result = self._results.get(turn_id)
        if result is None:
            result = self._results[turn_id] = TurnResult(turn_id=turn_id)
            self._turn_finished(turn_id)
            self._new_turn.set()
            self._forget_old_results()
        if isinstance(event, UserTranscript):
            result.heard = event.text
            self._new_turn.set()
        elif isinstance(event, UserEmotion):
            result.emotion = event.label
        elif isinstance(event, Subtitle):
            result.persona = event.persona
            result.sentences.append(event.text)
        elif isinstance(event, Notice):
            result.notices.append(event.message)
        elif isinstance(event, Error):
            result.errors.append(event.message)
        elif isinstance(event, Latency):
            result.latency = event
        elif isinstance(event, TurnDone):
            result.persona = event.persona
            self._finished[turn_id].set()
        elif isinstance(event, TurnDropped):
            result.is_dropped = True
            self._finished[turn_id].set()
        elif isinstance(event, Interrupted):
            result.is_interrupted = True
            self._finished[turn_id].set()
