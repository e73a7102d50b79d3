"""The speech stage: each subtitle sentence becomes an Audio event in the persona's voice, off the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np

from assistant.audio.fade import fade_out
from assistant.audio.lipsync import mouth_values
from assistant.config.schema import PersonaConfig, TtsConfig, VoiceConfig
from assistant.errors import ConfigError, SaijinError
from assistant.events import Audio, Error, Event, Mode, Subtitle, now
from assistant.stage import Stage, StageContext, timing
from assistant.threads import CORES
from assistant.tts.synthesizer import Style, Synthesizer, make_synthesizer

log = logging.getLogger(__name__)


def _primary(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


#: A chunk ending in one of these is a whole sentence: the full sentence pause follows it.
_SENTENCE_ENDS = "。｡！？!?.．…‥」』）)\"”"
#: A first clause cut at a comma (こんばんは、): half the pause; cut between words: none, the sentence goes on.
_CLAUSE_ENDS = "、，,;；:："


def pause_after(text: str, sentence_pause_ms: int) -> int:
    """The silence after a spoken chunk: the sentence pause after a sentence, less after a first clause."""
    last = text.rstrip()[-1:]
    if not last or last in _SENTENCE_ENDS:
        return sentence_pause_ms
    return sentence_pause_ms // 2 if last in _CLAUSE_ENDS else 0


class SpeechStage(Stage):
    """Synthesises every Subtitle as soon as it arrives (while the LLM keeps streaming).

    In: Subtitle (one sentence), Mode (normal/bedtime: bedtime speaks with the voice's bedtime style).
    Out: Audio (samples + the sentence pause + mouth values) and StageTiming(stage="tts") per sentence.
    The persona's ``alt_voices[language]`` speaks sentences in another language than the persona's own.
    """

    accepts = (Subtitle, Mode)

    def __init__(self, personas: dict[str, PersonaConfig], tts_cfg: TtsConfig,
                 synth_factory: Callable[[VoiceConfig], Synthesizer] = make_synthesizer,
                 *, preload: bool = True, is_bedtime: bool = False) -> None:
        super().__init__()
        self.personas = personas
        self.tts_cfg = tts_cfg
        self._factory = synth_factory
        self._preload = preload
        self.is_bedtime = is_bedtime
        self._failed_voice: str | None = None
        # One worker thread: sentences are synthesised one after another, in order, off the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts")

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        if self._preload:
            await self._run(self._load_all)

    def _load_all(self) -> None:
        """Load every voice the personas use (each once); a voice that fails is reported when it is needed."""
        for persona in self.personas.values():
            for voice in (persona.voice, *persona.alt_voices.values()):
                try:
                    self._factory(voice).load()
                except SaijinError as exc:
                    log.warning("%s: voice %s: %s", persona.id, voice.voice, exc)

    async def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., object], *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def voice_for(self, persona: PersonaConfig, language: str | None) -> VoiceConfig:
        """The persona's voice, or its alternative voice for a sentence in another language."""
        if language and _primary(language) != _primary(persona.language):
            alt = persona.alt_voices.get(language) or persona.alt_voices.get(_primary(language))
            if alt is not None:
                return alt
        return persona.voice

    async def process(self, event: Event) -> AsyncIterator[Event]:
        if isinstance(event, Mode):
            self.is_bedtime = event.value == "bedtime"
            return
        if not isinstance(event, Subtitle):
            return
        persona = self.personas.get(event.persona)
        if persona is None:
            raise ConfigError(f"no persona named {event.persona!r} to speak with — known: {', '.join(self.personas)}")
        voice = self.voice_for(persona, event.language)
        style = Style.from_voice(voice, bedtime=self.is_bedtime)
        started = now()
        pause_ms = style.sentence_pause_ms if style.sentence_pause_ms is not None else self.tts_cfg.sentence_pause_ms
        pause_ms = pause_after(event.text, pause_ms)
        try:
            samples, rate, mouth = await self._run(self._synthesize, voice, event.text, style, pause_ms,  # type: ignore[misc]
                                                   event.fade_out_s, event.sentence_index == 0)
        except Exception as exc:
            # The reply goes on without this sentence's sound (its text still shows); the user is told once.
            log.warning("speech for turn %d sentence %d failed: %s", event.turn_id, event.sentence_index, exc,
                        exc_info=not isinstance(exc, SaijinError))
            if self._failed_voice != voice.voice:
                self._failed_voice = voice.voice
                message = str(exc) if isinstance(exc, SaijinError) else f"speech synthesis failed ({voice.voice}): {exc}"
                yield Error(message=message, turn_id=event.turn_id)
            samples, rate, mouth = np.zeros(0, dtype=np.float32), 16000, ()
        else:
            self._failed_voice = None
        ended = now()
        yield Audio(turn_id=event.turn_id, sentence_index=event.sentence_index, sample_rate=rate,
                    samples=samples, mouth=mouth, text=event.text)
        yield timing(event.turn_id, "tts", started, ended)

    def _synthesize(self, voice: VoiceConfig, text: str, style: Style, pause_ms: int,
                    fade_out_s: float = 0.0, is_first: bool = False) -> tuple[np.ndarray, int, tuple[float, ...]]:
        """In the worker thread: the sentence's samples (faded out if asked) with its pause, their rate and
        the mouth values. A reply's first chunk is what the user waits for: it holds the cores (`CORES`)."""
        with CORES.urgent() if is_first else nullcontext():
            samples, rate = self._factory(voice).synthesize(text, style)
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if fade_out_s > 0:
            samples = fade_out(samples, rate, fade_out_s)
        if pause_ms:
            samples = np.concatenate([samples, np.zeros(int(rate * pause_ms / 1000), dtype=np.float32)])
        return samples, int(rate), mouth_values(samples, rate)
