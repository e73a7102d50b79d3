"""The Understand stage: voice segments -> their words (one recognition each) and the user's emotion -> a
ready user turn.

Each voice segment is recognised once, as soon as it pauses (UserSpeechPaused): if the user does not go on,
that recognition is the segment's, so speech recognition leaves the voice-to-voice path; if they do
(VoiceResumed), the job is stale and is dropped before it starts or at its next boundary (between the encoder
and the decoder). A turn made of several segments (the user went on before the reply was heard) joins its
segments' texts, each recognised in its own language with the previous segment's words as the prompt: merged
audio is never recognised again, so no sentence is lost by merging. On a CPU one recognition runs at a time
(two at once on two cores each take twice as long). Each recognised segment is announced (SegmentTranscript)
so that the turn controller can judge whether the user has finished.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from assistant.config.schema import AsrConfig, BedtimeConfig, EmotionConfig
from assistant.errors import SaijinError
from assistant.events import (
    Error,
    Event,
    Mode,
    SegmentTranscript,
    StageTiming,
    TurnDropped,
    UserEmotion,
    UserSpeechEnded,
    UserSpeechPaused,
    UserTranscript,
    UserTurnReady,
    VoiceProbe,
    VoiceResumed,
    now,
)
from assistant.speech.emotion import EmotionResult, EmotionTagger, decide_emotion
from assistant.speech.transcriber import HallucinationGuard, StaleTranscription, Transcriber, Transcript
from assistant.stage import Stage, StageContext, timing
from assistant.text import join_parts
from assistant.threads import CORES

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Segments whose recognition is kept (a turn may join a few; older ones are let go).
_KEEP_SEGMENTS = 16
#: An early language guess (VoiceProbe) at least this sure decides the model and language of the segment.
PROBE_CONFIDENCE = 0.8


@dataclass
class _Timed:
    """A job's result, when it was handed to the worker and when it really ran (in the worker thread)."""

    value: Any
    started_at: float
    ended_at: float
    submitted_at: float = 0.0


def _timed(fn: Callable[[], T], submitted_at: float) -> _Timed:
    started = now()
    value = fn()
    return _Timed(value=value, started_at=started, ended_at=now(), submitted_at=submitted_at)


@dataclass
class _Job:
    """One recognition of one segment's audio (up to a pause, or to its end)."""

    segment_id: int
    length: int
    pause_id: int
    future: Future[_Timed] = field(default_factory=Future)
    #: Set when the user went on: the worker gives up at its next boundary.
    is_stale: bool = False

    def usable_for(self, length: int) -> bool:
        return not self.is_stale and not self.future.cancelled() and self.length == length


@dataclass
class _Part:
    """One segment of a finished turn, with its recognition."""

    segment_id: int | None
    audio: np.ndarray
    job: _Job | None = None
    skip_reason: str | None = None


class UnderstandStage(Stage):
    """UserSpeechPaused / UserSpeechEnded -> SegmentTranscript (per segment), then UserTranscript, UserEmotion,
    StageTiming, UserTurnReady (or TurnDropped alone when the hallucination guard rejects the utterance). Mode: in
    bedtime the utterance RMS gate drops to ``bedtime_cfg.rms_gate`` when that is lower (whispers count).
    VoiceProbe: the language of a segment's first second is guessed while the user goes on, and its words are
    then recognised in that language (by ``asr.english_model`` when it is English)."""

    accepts = (UserSpeechPaused, UserSpeechEnded, Mode, VoiceProbe)
    urgent = (VoiceResumed,)

    def __init__(self, transcriber: Transcriber, tagger: EmotionTagger | None, asr_cfg: AsrConfig,
                 emotion_cfg: EmotionConfig, bedtime_cfg: BedtimeConfig | None = None) -> None:
        super().__init__()
        self.transcriber = transcriber
        self.tagger = tagger
        self.asr_cfg = asr_cfg
        self.emotion_cfg = emotion_cfg
        self.bedtime_cfg = bedtime_cfg
        self.guard = HallucinationGuard.from_config(asr_cfg)
        # One recognition at a time: a stale job never competes with the one that matters for the cores.
        self._asr_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")
        self._emotion_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emotion")
        self._jobs: collections.OrderedDict[int, _Job] = collections.OrderedDict()
        self._emotion_jobs: collections.OrderedDict[int, tuple[int, Future[_Timed]]] = collections.OrderedDict()
        #: Language guesses of segments (VoiceProbe), by segment.
        self._probes: collections.OrderedDict[int, Future[_Timed]] = collections.OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Segments answered from the recognition made at their pause, and stale jobs given up (for tests
        #: and benchmarks).
        self.speculative_hits = 0
        self.stale_jobs = 0

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        loop = self._loop = asyncio.get_running_loop()
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
        for job in self._jobs.values():
            job.is_stale = True
            job.future.cancel()
        self._jobs.clear()
        self._asr_pool.shutdown(wait=False, cancel_futures=True)
        self._emotion_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ jobs

    @staticmethod
    def _words_of(job: _Job | None) -> str | None:
        """The recognised words of a finished, usable job (a prompt for the next segment's)."""
        if job is None or job.is_stale or not job.future.done() or job.future.cancelled():
            return None
        if job.future.exception() is not None:
            return None
        transcript: Transcript = job.future.result().value
        return transcript.text or None

    def _submit_asr(self, segment_id: int | None, audio: np.ndarray, pause_id: int = 0,
                    previous_segment: int | None = None) -> _Job:
        job = _Job(segment_id=segment_id if segment_id is not None else -1, length=len(audio), pause_id=pause_id)
        previous = self._jobs.get(previous_segment) if previous_segment is not None else None

        def recognise() -> Transcript:
            # Read when the job runs: one job at a time, so the previous segment's words and this
            # segment's language guess are done by then.
            prompt = self._words_of(previous)
            language = self._probed_language(segment_id)
            with CORES.urgent():  # the user is waiting for these words: the LLM writing ahead pauses
                return self.transcriber.transcribe(audio, prompt=prompt, language=language,
                                                   is_stale=lambda: job.is_stale)

        job.future = self._asr_pool.submit(_timed, recognise, now())
        if segment_id is not None:
            old = self._jobs.pop(segment_id, None)
            if old is not None and old is not job:
                self._give_up(old)
            self._jobs[segment_id] = job
            while len(self._jobs) > _KEEP_SEGMENTS:
                self._give_up(self._jobs.popitem(last=False)[1])
            job.future.add_done_callback(lambda _f: self._call_soon(self._announce, job))
        return job

    def _on_probe(self, event: VoiceProbe) -> None:
        if not self.asr_cfg.probes_language:
            return
        if self.guard.check_audio(event.audio, event.sample_rate) is not None:
            return
        transcriber, audio = self.transcriber, event.audio
        self._probes[event.segment_id] = self._asr_pool.submit(_timed, lambda: transcriber.detect_language(audio),
                                                               now())
        while len(self._probes) > _KEEP_SEGMENTS:
            self._probes.popitem(last=False)[1].cancel()

    def _probed_language(self, segment_id: int | None) -> str | None:
        """The language guessed early for this segment, when it was sure (else None: the model decides)."""
        probe = self._probes.get(segment_id) if segment_id is not None else None
        if probe is None or not probe.done() or probe.cancelled() or probe.exception() is not None:
            return None
        language, probability = probe.result().value
        return str(language) if probability >= PROBE_CONFIDENCE else None

    def _give_up(self, job: _Job) -> None:
        if not job.future.done():
            job.is_stale = True
            if job.future.cancel():
                self.stale_jobs += 1

    def _call_soon(self, fn: Callable[[_Job], None], job: _Job) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, job)

    def _announce(self, job: _Job) -> None:
        """A segment's recognition finished: tell the turn controller its words (nothing for a stale job)."""
        if job.future.cancelled():
            return
        error = job.future.exception()
        if isinstance(error, StaleTranscription):
            self.stale_jobs += 1
            return
        if job.is_stale or self._jobs.get(job.segment_id) is not job:
            return
        if error is not None:
            self.emit(SegmentTranscript(segment_id=job.segment_id, text="", language="", pause_id=job.pause_id,
                                        is_speech=False))
            return
        transcript: Transcript = job.future.result().value
        is_speech = self.guard.check_transcript(transcript) is None
        self.emit(SegmentTranscript(segment_id=job.segment_id, text=transcript.text if is_speech else "",
                                    language=transcript.language, pause_id=job.pause_id, is_speech=is_speech))

    def _submit_emotion(self, audio: np.ndarray) -> Future[_Timed] | None:
        if self.tagger is None:
            return None
        tagger = self.tagger
        return self._emotion_pool.submit(_timed, lambda: tagger.scores(audio), now())

    def _on_pause(self, event: UserSpeechPaused) -> None:
        old = self._jobs.get(event.segment_id)
        if old is not None:
            self._give_up(old)
        reason = self.guard.check_audio(event.audio, event.sample_rate)
        if reason is not None or not self.asr_cfg.speculative:
            # Nothing worth recognising yet (or recognition waits for the end): the VAD need not wait for words.
            self.emit(SegmentTranscript(segment_id=event.segment_id, text="", language="", pause_id=event.pause_id,
                                        is_speech=False))
            return
        self._submit_asr(event.segment_id, event.audio, event.pause_id, event.previous_segment)
        emotion = self._submit_emotion(event.audio)
        if emotion is not None:
            self._emotion_jobs[event.segment_id] = (len(event.audio), emotion)
            while len(self._emotion_jobs) > _KEEP_SEGMENTS:
                self._emotion_jobs.popitem(last=False)[1][1].cancel()

    def on_urgent(self, event: Event) -> None:
        if isinstance(event, VoiceResumed):
            job = self._jobs.get(event.segment_id)
            if job is not None:
                self._give_up(job)
            emotion = self._emotion_jobs.pop(event.segment_id, None)
            if emotion is not None:
                emotion[1].cancel()

    # ------------------------------------------------------------------ events

    async def process(self, event: Event) -> AsyncIterator[Event]:
        if isinstance(event, Mode):
            # Bedtime speech is quiet: its RMS gate (if lower) lets whispers through to the recogniser.
            is_bedtime = event.value == "bedtime" and self.bedtime_cfg is not None
            gate = self.asr_cfg.rms_gate
            self.guard.rms_gate = min(gate, self.bedtime_cfg.rms_gate) if is_bedtime and self.bedtime_cfg else gate
            return
        if isinstance(event, UserSpeechPaused):
            self._on_pause(event)
            return
        if isinstance(event, VoiceProbe):
            self._on_probe(event)
            return
        if isinstance(event, UserSpeechEnded):
            async for produced in self._on_end(event):
                yield produced

    def _parts(self, event: UserSpeechEnded) -> list[_Part]:
        """The turn's segments with a recognition for each: the one made at its pause when the audio is the
        same, else a new one (submitted in order, so the previous segment's words can prompt the next)."""
        audio = event.audio
        if not event.segment_ids:  # a turn that names no segments: one piece
            return [_Part(segment_id=None, audio=audio)]
        bounds = [*event.segment_starts, len(audio)]
        return [_Part(segment_id=segment, audio=audio[bounds[i]:bounds[i + 1]])
                for i, segment in enumerate(event.segment_ids)]

    async def _on_end(self, event: UserSpeechEnded) -> AsyncIterator[Event]:
        turn_id = event.turn_id
        parts = self._parts(event)
        previous: int | None = None
        for part in parts:
            part.skip_reason = self.guard.check_audio(part.audio, event.sample_rate)
            if part.skip_reason is None:
                job = self._jobs.get(part.segment_id) if part.segment_id is not None else None
                if job is not None and job.usable_for(len(part.audio)):
                    if job.pause_id:
                        self.speculative_hits += 1
                else:
                    job = self._submit_asr(part.segment_id, part.audio, previous_segment=previous)
                part.job = job
            previous = part.segment_id
        if all(part.job is None for part in parts):
            skipped = parts[-1].skip_reason or "no audio"
            log.info("turn %d dropped: %s", turn_id, skipped)
            yield TurnDropped(turn_id=turn_id, reason=skipped)
            return
        emotion_task = self._emotion_for(event, parts)
        texts: list[str] = []
        transcript: Transcript | None = None
        asr_started: float | None = None
        asr_ended = 0.0
        waited = 0.0
        reason: str | None = None
        for part in parts:
            if part.job is None:
                continue
            try:
                # Shielded: a cancelled turn (merged into the next) leaves its segments' jobs running for it.
                result = await asyncio.shield(asyncio.wrap_future(part.job.future))
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
            heard: Transcript = result.value
            reason = self.guard.check_transcript(heard)
            asr_started = result.started_at if asr_started is None else asr_started
            asr_ended = max(asr_ended, result.ended_at)
            waited += max(0.0, result.started_at - result.submitted_at)
            if reason is None:
                texts.append(heard.text)
                transcript = heard
        if transcript is None:
            log.info("turn %d dropped: %s", turn_id, reason)
            if emotion_task is not None:
                emotion_task.cancel()
            yield TurnDropped(turn_id=turn_id, reason=reason or "nothing recognised")
            return
        text = join_parts(texts)
        language = transcript.language or self.asr_cfg.language
        yield UserTranscript(turn_id=turn_id, text=text, language=language)
        if asr_started is not None:
            yield timing(turn_id, "asr", asr_started, asr_ended)
        if waited > 0.01:  # the worker was busy (an earlier job)
            yield timing(turn_id, "asr_wait", asr_ended - waited, asr_ended)
        emotion, emotion_timing = await self._emotion(turn_id, emotion_task)
        if emotion is not None:
            yield UserEmotion(turn_id=turn_id, label=emotion.label, score=round(emotion.score, 4),
                              scores={k: round(v, 4) for k, v in emotion.scores.items()},
                              is_calibrated=bool(getattr(self.tagger, "is_calibrated", False)))
        if emotion_timing is not None:
            yield emotion_timing
        yield UserTurnReady(turn_id=turn_id, text=text, language=language,
                            emotion=emotion.label if emotion is not None else None,
                            emotion_score=emotion.score if emotion is not None else 0.0,
                            speech_end=event.speech_end, merged_from=event.merged_from, parts=tuple(texts))

    def _emotion_for(self, event: UserSpeechEnded, parts: list[_Part]) -> asyncio.Future[_Timed] | None:
        """How the user sounded over the whole turn: the tagging made at the pause when it is the same audio."""
        job: Future[_Timed] | None = None
        if len(parts) == 1 and parts[0].segment_id is not None:
            speculated = self._emotion_jobs.pop(parts[0].segment_id, None)
            if speculated is not None and speculated[0] == len(event.audio):
                job = speculated[1]
        if job is None:
            job = self._submit_emotion(event.audio)
        return asyncio.wrap_future(job) if job is not None else None

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
