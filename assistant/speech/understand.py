"""The Understand stage: a finished utterance -> transcript and emotion (concurrently) -> a ready user turn.

Speculative transcription: on UserSpeechPaused the audio so far is transcribed (and tagged) at once in
the background. If that turn's UserSpeechEnded brings the same audio (the VAD makes the two identical
when nothing more was said), the results are taken as they are, so ASR leaves the voice-to-voice path;
otherwise they are thrown away.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from assistant.config.schema import AsrConfig, BedtimeConfig, EmotionConfig
from assistant.errors import SaijinError
from assistant.events import (
    Error,
    Event,
    Mode,
    StageTiming,
    TurnDropped,
    UserEmotion,
    UserSpeechEnded,
    UserSpeechPaused,
    UserTranscript,
    UserTurnReady,
    now,
)
from assistant.pipeline.runtime import timing
from assistant.pipeline.stage import Stage, StageContext
from assistant.speech.emotion import EmotionResult, EmotionTagger, decide_emotion
from assistant.speech.transcriber import HallucinationGuard, Transcriber, Transcript

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Speculative results kept for at most this many turns (a turn that never ends must not leak).
_MAX_SPECULATIONS = 4


@dataclass
class _Timed:
    """A job's result, when it was handed to the worker and when it really ran (in the worker thread)."""

    value: Any
    started_at: float
    ended_at: float
    submitted_at: float = 0.0


def _timed(fn: Callable[[np.ndarray], T], audio: np.ndarray, submitted_at: float = 0.0) -> _Timed:
    started = now()
    value = fn(audio)
    return _Timed(value=value, started_at=started, ended_at=now(), submitted_at=submitted_at or started)


@dataclass
class _Speculation:
    length: int
    asr: Future[_Timed]
    emotion: Future[_Timed] | None


class UnderstandStage(Stage):
    """UserSpeechPaused / UserSpeechEnded -> UserTranscript, UserEmotion, StageTiming, UserTurnReady
    (or TurnDropped alone when the hallucination guard rejects the utterance). Mode: in bedtime the
    utterance RMS gate drops to ``bedtime_cfg.rms_gate`` when that is lower (whispers count)."""

    accepts = (UserSpeechPaused, UserSpeechEnded, Mode)

    def __init__(self, transcriber: Transcriber, tagger: EmotionTagger | None, asr_cfg: AsrConfig,
                 emotion_cfg: EmotionConfig, bedtime_cfg: BedtimeConfig | None = None) -> None:
        super().__init__()
        self.transcriber = transcriber
        self.tagger = tagger
        self.asr_cfg = asr_cfg
        self.emotion_cfg = emotion_cfg
        self.bedtime_cfg = bedtime_cfg
        self.guard = HallucinationGuard.from_config(asr_cfg)
        # Two threads (the Whisper model has two workers): the final transcription never queues behind a
        # speculative one that the user's resumed speech made stale.
        self._asr_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="asr")
        self._emotion_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emotion")
        self._speculations: collections.OrderedDict[int, _Speculation] = collections.OrderedDict()
        #: How many utterances were answered from a speculative transcript (for tests and benchmarks).
        self.speculative_hits = 0

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        loop = asyncio.get_running_loop()
        asr_load = loop.run_in_executor(self._asr_pool, self.transcriber.load)
        if self.tagger is not None:
            try:
                await loop.run_in_executor(self._emotion_pool, self.tagger.load)
            except Exception as exc:
                log.debug("emotion model failed to load", exc_info=True)
                log.warning("emotion tagging is off: %s", exc)
                self.tagger = None
        try:
            await asr_load
        except SaijinError as exc:
            # DESIGN §7: a model that fails to load is reported and the assistant keeps running (typed input
            # still works); every utterance tries the model again, so a repaired one is used without a restart.
            log.debug("speech recognition model failed to load", exc_info=True)
            log.warning("speech recognition is not available: %s", exc)
            self.emit(Error(message=f"speech recognition is not available: {exc}"))

    async def stop(self) -> None:
        for speculation in self._speculations.values():
            speculation.asr.cancel()
            if speculation.emotion is not None:
                speculation.emotion.cancel()
        self._speculations.clear()
        self._asr_pool.shutdown(wait=False, cancel_futures=True)
        self._emotion_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ jobs

    def _submit_asr(self, audio: np.ndarray) -> Future[_Timed]:
        return self._asr_pool.submit(_timed, self.transcriber.transcribe, audio, now())

    def _submit_emotion(self, audio: np.ndarray) -> Future[_Timed] | None:
        if self.tagger is None:
            return None
        return self._emotion_pool.submit(_timed, self.tagger.scores, audio)

    def _speculate(self, event: UserSpeechPaused) -> None:
        old = self._speculations.pop(event.turn_id, None)
        if old is not None:
            old.asr.cancel()  # only stops it if it has not started
            if old.emotion is not None:
                old.emotion.cancel()
        if self.guard.check_audio(event.audio, event.sample_rate) is not None:
            return
        self._speculations[event.turn_id] = _Speculation(
            length=len(event.audio), asr=self._submit_asr(event.audio), emotion=self._submit_emotion(event.audio))
        while len(self._speculations) > _MAX_SPECULATIONS:
            _turn, stale = self._speculations.popitem(last=False)
            stale.asr.cancel()

    # ------------------------------------------------------------------ events

    async def process(self, event: Event) -> AsyncIterator[Event]:
        if isinstance(event, Mode):
            # Bedtime speech is quiet: its RMS gate (if lower) lets whispers through to the recogniser.
            is_bedtime = event.value == "bedtime" and self.bedtime_cfg is not None
            gate = self.asr_cfg.rms_gate
            self.guard.rms_gate = min(gate, self.bedtime_cfg.rms_gate) if is_bedtime else gate
            return
        if isinstance(event, UserSpeechPaused):
            if self.asr_cfg.speculative:
                self._speculate(event)
            return
        if not isinstance(event, UserSpeechEnded):
            return
        turn_id, audio = event.turn_id, event.audio
        speculation = self._speculations.pop(turn_id, None)
        reason = self.guard.check_audio(audio, event.sample_rate)
        if reason is not None:
            log.info("turn %d dropped: %s", turn_id, reason)
            yield TurnDropped(turn_id=turn_id, reason=reason)
            return
        if speculation is not None and speculation.length == len(audio):
            self.speculative_hits += 1
            asr_job, emotion_job = speculation.asr, speculation.emotion
            if emotion_job is None:
                emotion_job = self._submit_emotion(audio)
        else:
            if speculation is not None:
                speculation.asr.cancel()
            asr_job, emotion_job = self._submit_asr(audio), self._submit_emotion(audio)
        emotion_task = asyncio.wrap_future(emotion_job) if emotion_job is not None else None
        try:
            asr = await asyncio.wrap_future(asr_job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("speech recognition failed on turn %d", turn_id)
            if emotion_task is not None:
                emotion_task.cancel()
            # This stage ends the turn itself (TurnDropped), so the error does not cancel it as well.
            yield Error(message=f"speech recognition failed: {exc}", turn_id=turn_id, ends_turn=False)
            yield TurnDropped(turn_id=turn_id, reason="speech recognition failed")
            return
        transcript: Transcript = asr.value
        reason = self.guard.check_transcript(transcript)
        if reason is not None:
            log.info("turn %d dropped: %s", turn_id, reason)
            if emotion_task is not None:
                emotion_task.cancel()
            yield TurnDropped(turn_id=turn_id, reason=reason)
            return
        language = transcript.language or self.asr_cfg.language
        yield UserTranscript(turn_id=turn_id, text=transcript.text, language=language)
        yield timing(turn_id, "asr", asr.started_at, asr.ended_at)
        if asr.started_at - asr.submitted_at > 0.01:  # the worker was busy (an earlier speculative job)
            yield timing(turn_id, "asr_wait", asr.submitted_at, asr.started_at)
        emotion, emotion_timing = await self._emotion(turn_id, emotion_task)
        if emotion is not None:
            yield UserEmotion(turn_id=turn_id, label=emotion.label, score=round(emotion.score, 4),
                              scores={k: round(v, 4) for k, v in emotion.scores.items()})
        if emotion_timing is not None:
            yield emotion_timing
        yield UserTurnReady(turn_id=turn_id, text=transcript.text, language=language,
                            emotion=emotion.label if emotion is not None else None,
                            emotion_score=emotion.score if emotion is not None else 0.0,
                            speech_end=event.speech_end)

    async def _emotion(self, turn_id: int, task: asyncio.Future[_Timed] | None
                       ) -> tuple[EmotionResult | None, StageTiming | None]:
        if task is None:
            return None, None
        try:
            job = await task
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("emotion tagging failed", exc_info=True)
            log.warning("emotion tagging failed on turn %d, going on without it: %s", turn_id, exc)
            return None, None
        cfg = self.emotion_cfg
        result = decide_emotion(job.value, cfg.label_map, cfg.threshold)
        return result, timing(turn_id, "emotion", job.started_at, job.ended_at)
