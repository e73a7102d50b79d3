"""Voice activity: a pure webrtcvad segmenter (sample positions in, segments out) and the stage around it.

The segmenter works on 10, 20 or 30 ms frames. A run of ``start_ms`` voiced frames starts a segment,
whose audio begins ``preroll_ms`` before the run (so the first syllable is never clipped). When a voiced
run ends, its real end is fixed: the end of the last voiced frame, less the fading tail that webrtcvad
still calls speech for about 100 ms (see ``Segmenter._speech_end``); voice-to-voice latency counts from
it. Silence is counted from that end: ``tail_ms`` of it is reported as a pause (with the audio so far,
for a speculative transcript) and ``hangover_ms`` of it ends the segment — or, with ``words_wait_ms``
(adaptive end of turn), the segment stays open after a pause until ``apply_hint`` says how long its silence
must be, decided from the words recognised at the pause. The segment's audio runs to
``tail_ms`` after the end of speech, in a pause report and at the end alike, so a speculative
transcript of the pause is the transcript of the segment when nothing more is said. Segments with less
than ``min_utterance_ms`` of speech are dropped; one longer than ``max_utterance_s`` is cut and a new one
starts at once. The VAD knows nothing of turns: the turn controller maps its events to user turns.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from assistant.audio.level import rms
from assistant.audio.resample import TARGET_RATE, StreamResampler
from assistant.config.schema import BargeInConfig, BedtimeConfig, VadConfig
from assistant.events import (
    AudioFrame,
    EndOfTurnHint,
    Event,
    InputEnded,
    Interrupted,
    Mode,
    PlaybackFinished,
    PlaybackStarted,
    VoiceDropped,
    VoiceEnded,
    VoicePaused,
    VoiceProbe,
    VoiceResumed,
    VoiceStarted,
    now,
)
from assistant.stage import Stage

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# What the segmenter reports (sample positions counted from the start of the stream)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentStart:
    onset: int
    segment_id: int = 0


@dataclass(frozen=True, slots=True)
class SegmentPause:
    onset: int
    pause_start: int
    audio: np.ndarray = field(repr=False)
    segment_id: int = 0
    pause_id: int = 0


@dataclass(frozen=True, slots=True)
class SegmentProbe:
    """The segment's first ``probe_ms`` of speech, while it goes on (for an early guess of its language)."""

    onset: int
    audio: np.ndarray = field(repr=False)
    segment_id: int = 0


@dataclass(frozen=True, slots=True)
class SegmentResume:
    onset: int
    at: int
    segment_id: int = 0


@dataclass(frozen=True, slots=True)
class SegmentEnd:
    onset: int
    #: The end of the last voiced frame.
    speech_end: int
    #: Where the segmenter was when it decided (end of the hangover, of the input, or the cut).
    decided: int
    #: Where ``audio`` starts (``onset`` minus the pre-roll, or the cut point of a continued segment).
    audio_start: int
    audio: np.ndarray = field(repr=False)
    is_cut: bool = False
    segment_id: int = 0


@dataclass(frozen=True, slots=True)
class SegmentDrop:
    onset: int
    speech_end: int
    segment_id: int = 0


Segment = SegmentStart | SegmentProbe | SegmentPause | SegmentResume | SegmentEnd | SegmentDrop

#: Trailing voiced frames quieter than this fraction of the segment's loudest (-30 dB) are fading tail.
_TAIL_RATIO = 10 ** (-30 / 20)
#: At most this many frames are taken back from webrtcvad's end of speech.
_MAX_TAIL_FRAMES = 10


class Segmenter:
    """webrtcvad frame decisions -> speech segments. Pure: no clock, no events, no I/O."""

    def __init__(self, frame_ms: int = 20, aggressiveness: int = 2, start_ms: int = 60, hangover_ms: int = 300,
                 preroll_ms: int = 300, min_utterance_ms: int = 250, max_utterance_s: float = 20.0,
                 tail_ms: int = 100, rms_gate: float = 0.0, sample_rate: int = TARGET_RATE,
                 words_wait_ms: int | None = None, probe_ms: int | None = None) -> None:
        import webrtcvad

        if frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30 (got {frame_ms})")
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad needs 8, 16, 32 or 48 kHz (got {sample_rate})")
        self.sample_rate = sample_rate
        self.frame_len = sample_rate * frame_ms // 1000
        self._vad = webrtcvad.Vad(int(aggressiveness))
        self.aggressiveness = int(aggressiveness)
        self.rms_gate = float(rms_gate)
        self.start_frames = max(1, math.ceil(start_ms / frame_ms))
        self.hangover_len = max(self.frame_len, sample_rate * hangover_ms // 1000)
        self.tail_len = min(sample_rate * tail_ms // 1000, self.hangover_len - self.frame_len)
        #: Adaptive end of turn: after a pause the segment stays open until a hint (``apply_hint``) says how
        #: long the silence must be, or this long at most. None: ``hangover_len`` always.
        self.words_wait_len = None if words_wait_ms is None else max(self.hangover_len,
                                                                      sample_rate * words_wait_ms // 1000)
        self._needed_silence = self.hangover_len
        #: A SegmentProbe this far after the onset of each segment (None: no probes).
        self.probe_len = None if probe_ms is None else sample_rate * probe_ms // 1000
        self._probed = False
        self.segment_id = 0  # the open (or last) segment's number
        self.pause_id = 0    # the last pause's number (unique in the stream)
        self.preroll_frames = max(0, math.ceil(preroll_ms / frame_ms))
        self.min_speech = sample_rate * min_utterance_ms // 1000
        self.max_len = int(sample_rate * max_utterance_s)
        self.position = 0  # samples framed so far (the end of the last frame)
        self._pending = np.zeros(0, dtype=np.float32)
        self._recent: collections.deque[tuple[int, np.ndarray, float]] = collections.deque(
            maxlen=self.preroll_frames + self.start_frames)
        #: Levels of recent frames that were not speech (the background), for the end-of-speech refinement.
        self._quiet_levels: collections.deque[float] = collections.deque(maxlen=max(1, 3000 // frame_ms))
        self._run_start = 0
        self._run_len = 0
        # The open segment, if any.
        self.is_speaking = False
        self._frames: list[np.ndarray] = []
        self._frame_levels: list[float] = []
        self._peak = 0.0  # the open segment's loudest frame level
        self._audio_start = 0
        self._onset = 0
        self._last_voiced_end = 0
        self._end_estimate = 0
        self._silent_frames = 0
        self._is_paused = False

    def set_aggressiveness(self, value: int) -> None:
        self._vad.set_mode(int(value))
        self.aggressiveness = int(value)

    def is_voiced(self, frame: np.ndarray, min_rms: float = 0.0, level: float | None = None) -> bool:
        """The frame decision: loud enough for the gates, and speech for webrtcvad."""
        gate = max(self.rms_gate, min_rms)
        if level is None:
            level = rms(frame)
        if gate > 0 and level < gate:
            return False
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return bool(self._vad.is_speech(pcm, self.sample_rate))

    def push(self, samples: np.ndarray, min_rms: float = 0.0, is_muted: bool = False) -> list[Segment]:
        """Feed audio (any length); returns what happened. ``min_rms`` and ``is_muted`` apply to these samples
        (the echo gate: speech must be louder than that, or is ignored altogether)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        count = len(data) // self.frame_len
        out: list[Segment] = []
        for i in range(count):
            frame = data[i * self.frame_len:(i + 1) * self.frame_len]
            level = rms(frame)
            is_voiced = not is_muted and self.is_voiced(frame, min_rms, level)
            out.extend(self._step(frame, level, is_voiced))
        self._pending = data[count * self.frame_len:].copy()
        return out

    def apply_hint(self, pause_id: int, hangover_ms: int) -> list[Segment]:
        """The words of pause ``pause_id`` are known: its segment ends after ``hangover_ms`` of silence — at
        once, if that much has passed. A hint for an older pause (the user went on) changes nothing."""
        if not (self.is_speaking and self._is_paused and pause_id == self.pause_id):
            return []
        self._needed_silence = max(self.tail_len + self.frame_len, self.sample_rate * hangover_ms // 1000)
        if self.position - self._end_estimate >= self._needed_silence:
            return [self._close(decided=self.position)]
        return []

    def flush(self) -> list[Segment]:
        """The input ended: close an open segment (less than one frame of unframed audio is let go)."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._run_len = 0
        if not self.is_speaking:
            return []
        return [self._close(decided=self.position)]

    # -------------------------------------------------------------- internals

    def _step(self, frame: np.ndarray, level: float, is_voiced: bool) -> list[Segment]:
        start = self.position
        end = self.position = start + len(frame)
        self._recent.append((start, frame, level))
        if not is_voiced:
            self._quiet_levels.append(level)
        if not self.is_speaking:
            if not is_voiced:
                self._run_len = 0
                return []
            if self._run_len == 0:
                self._run_start = start
            self._run_len += 1
            if self._run_len < self.start_frames:
                return []
            return [self._open(end)]
        self._frames.append(frame)
        self._frame_levels.append(level)
        self._peak = max(self._peak, level)
        if is_voiced and self._is_fading(level):
            is_voiced = False  # webrtcvad's fading tail (about 100 ms of it): the silence has begun
        out: list[Segment] = []
        if self.probe_len is not None and not self._probed and end - self._onset >= self.probe_len:
            self._probed = True
            out.append(SegmentProbe(onset=self._onset, audio=self._audio(until=end), segment_id=self.segment_id))
        if is_voiced:
            if self._is_paused:
                self._is_paused = False
                out.append(SegmentResume(onset=self._onset, at=start, segment_id=self.segment_id))
            self._last_voiced_end = end
            self._silent_frames = 0
        else:
            self._silent_frames += 1
            if self._silent_frames == 1:
                self._end_estimate = self._speech_end()  # the voiced run is over: fix its real end once
            silence = end - self._end_estimate
            if not self._is_paused and silence >= self.tail_len:
                self._is_paused = True
                self.pause_id += 1
                self._needed_silence = self.hangover_len if self.words_wait_len is None else self.words_wait_len
                out.append(SegmentPause(onset=self._onset, pause_start=self._end_estimate, audio=self._audio(),
                                        segment_id=self.segment_id, pause_id=self.pause_id))
            if silence >= self._needed_silence:
                out.append(self._close(decided=end))
                return out
        if end - self._audio_start >= self.max_len:
            if self._silent_frames:
                out.append(self._close(decided=end))
            else:
                out.extend(self._cut(end))
        return out

    def _is_fading(self, level: float) -> bool:
        """A voiced frame after the speech has faded: 30 dB under the segment's loudest frame, or barely
        above the background (what `_speech_end` steps back over, decided as the frames come)."""
        floor = float(np.median(self._quiet_levels)) if self._quiet_levels else 0.0
        return level < max(self._peak * _TAIL_RATIO, 2.0 * floor)

    def _speech_end(self) -> int:
        """The real end of speech: webrtcvad keeps calling the fading tail speech for about 100 ms, so step
        back over trailing voiced frames that are much quieter than the segment's speech (30 dB under its
        loudest frame) or barely above the background (2 x the median level of recent non-speech frames)."""
        end = self._last_voiced_end
        levels = self._frame_levels[: max(0, (end - self._audio_start) // self.frame_len)]
        if not levels:
            return end
        floor = float(np.median(self._quiet_levels)) if self._quiet_levels else 0.0
        threshold = max(max(levels) * _TAIL_RATIO, 2.0 * floor)
        steps = 0
        while (steps < _MAX_TAIL_FRAMES and len(levels) > steps + 1 and levels[-1 - steps] < threshold
               and end - (steps + 1) * self.frame_len > self._onset):
            steps += 1
        return end - steps * self.frame_len

    def _open(self, end: int) -> SegmentStart:
        self.is_speaking = True
        self.segment_id += 1
        self._onset = self._run_start
        first = self._run_start - self.preroll_frames * self.frame_len
        kept = [(frame, level) for start, frame, level in self._recent if start >= first]
        self._frames = [frame for frame, _level in kept]
        self._frame_levels = [level for _frame, level in kept]
        self._peak = max(self._frame_levels, default=0.0)
        self._audio_start = end - sum(len(f) for f in self._frames)
        self._last_voiced_end = self._end_estimate = end
        self._silent_frames = 0
        self._is_paused = False
        self._probed = False
        self._run_len = 0
        return SegmentStart(onset=self._onset, segment_id=self.segment_id)

    def _audio(self, until: int | None = None) -> np.ndarray:
        """The open segment's audio, up to ``tail`` after the end of speech (or ``until``)."""
        stop = self._end_estimate + self.tail_len if until is None else until
        audio = np.concatenate(self._frames) if self._frames else np.zeros(0, dtype=np.float32)
        return audio[: max(0, stop - self._audio_start)]

    def _close(self, decided: int) -> SegmentEnd | SegmentDrop:
        self.is_speaking = False
        self._run_len = 0
        if not self._silent_frames:  # closed while voiced (end of input)
            self._end_estimate = self._speech_end()
        onset, speech_end = self._onset, self._end_estimate
        audio = self._audio()
        self._frames, self._frame_levels = [], []
        self._is_paused = False
        if speech_end - onset < self.min_speech:
            return SegmentDrop(onset=onset, speech_end=speech_end, segment_id=self.segment_id)
        return SegmentEnd(onset=onset, speech_end=speech_end, decided=decided, audio_start=self._audio_start,
                          audio=audio, segment_id=self.segment_id)

    def _cut(self, end: int) -> list[Segment]:
        """The segment reached its maximum length while speech goes on: end it here and open the next."""
        ended = SegmentEnd(onset=self._onset, speech_end=end, decided=end, audio_start=self._audio_start,
                           audio=self._audio(until=end), is_cut=True, segment_id=self.segment_id)
        self._frames, self._frame_levels = [], []
        self._audio_start = self._onset = self._last_voiced_end = self._end_estimate = end
        self._silent_frames = 0
        self._is_paused = False
        self._probed = False
        self.segment_id += 1
        return [ended, SegmentStart(onset=end, segment_id=self.segment_id)]


# ------------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------------


class _Clock:
    """Maps stream sample positions to the pipeline clock, from the frames' 'last sample heard' stamps."""

    def __init__(self, keep_s: float = 30.0, sample_rate: int = TARGET_RATE) -> None:
        self.sample_rate = sample_rate
        self._marks: collections.deque[tuple[int, float]] = collections.deque()
        self._keep = int(keep_s * sample_rate)

    def add(self, end_sample: int, timestamp: float) -> None:
        self._marks.append((end_sample, timestamp))
        while self._marks and self._marks[0][0] < end_sample - self._keep:
            self._marks.popleft()

    def at(self, sample: int) -> float:
        """When the audio up to ``sample`` had been heard."""
        if not self._marks:
            return now()
        for end, stamp in self._marks:
            if end >= sample:
                return stamp - (end - sample) / self.sample_rate
        end, stamp = self._marks[-1]
        return stamp + (sample - end) / self.sample_rate


class VadStage(Stage):
    """AudioFrames -> VoiceStarted / VoicePaused / VoiceResumed / VoiceEnded / VoiceDropped.

    With ``wait_for_words`` (adaptive end of turn, when a recogniser transcribes each pause) a paused
    segment stays open until an EndOfTurnHint says how long its silence must be (see
    assistant/conversation/endpointing.py), for ``vad.words_wait_ms`` at most. With ``probe_language``
    each segment also gives a VoiceProbe after ``vad.language_probe_ms`` of speech.

    Mode switches the VAD to bedtime settings and back. The echo gate (``barge_in.echo_gate``) uses the
    urgent PlaybackStarted / PlaybackFinished: ``mute`` ignores the microphone while the assistant speaks,
    ``raise`` needs speech louder than ``echo_gate_ratio`` x the RMS of what is playing.
    """

    accepts = (AudioFrame, InputEnded, Mode, EndOfTurnHint)
    urgent = (PlaybackStarted, PlaybackFinished, Interrupted)

    def __init__(self, vad_cfg: VadConfig, barge_in_cfg: BargeInConfig | None = None,
                 bedtime_cfg: BedtimeConfig | None = None, wait_for_words: bool = False,
                 probe_language: bool = False) -> None:
        super().__init__()
        self.vad_cfg = vad_cfg
        self.barge_in_cfg = barge_in_cfg or BargeInConfig()
        self.bedtime_cfg = bedtime_cfg or BedtimeConfig()
        self.segmenter = Segmenter(frame_ms=vad_cfg.frame_ms, aggressiveness=vad_cfg.aggressiveness,
                                   start_ms=vad_cfg.start_ms, hangover_ms=vad_cfg.hangover_ms,
                                   preroll_ms=vad_cfg.preroll_ms, min_utterance_ms=vad_cfg.min_utterance_ms,
                                   max_utterance_s=vad_cfg.max_utterance_s,
                                   words_wait_ms=vad_cfg.words_wait_ms
                                   if wait_for_words and vad_cfg.end_of_turn == "adaptive" else None,
                                   probe_ms=vad_cfg.language_probe_ms if probe_language else None)
        self.mode = "normal"
        self._clock = _Clock(keep_s=vad_cfg.max_utterance_s + 10.0)
        self._received = 0  # 16 kHz samples received
        self._resampler: StreamResampler | None = None
        self._playing: dict[tuple[int, int], float] = {}

    @property
    def is_assistant_speaking(self) -> bool:
        return bool(self._playing)

    def on_urgent(self, event: Event) -> None:
        if isinstance(event, PlaybackStarted):
            self._playing[(event.turn_id, event.sentence_index)] = float(event.level)
        elif isinstance(event, PlaybackFinished):
            self._playing.pop((event.turn_id, event.sentence_index), None)
        elif isinstance(event, Interrupted):
            for key in [k for k in self._playing if k[0] == event.turn_id]:
                del self._playing[key]

    def _set_mode(self, value: str) -> None:
        if value == "bedtime":
            self.segmenter.set_aggressiveness(self.bedtime_cfg.vad_aggressiveness)
            self.segmenter.rms_gate = self.bedtime_cfg.rms_gate
        elif value == "normal":
            self.segmenter.set_aggressiveness(self.vad_cfg.aggressiveness)
            self.segmenter.rms_gate = 0.0
        else:
            return
        self.mode = value

    def _gate(self) -> tuple[float, bool]:
        """(min_rms, is_muted) for the audio arriving now."""
        gate = self.barge_in_cfg.echo_gate
        if not self._playing or gate == "off":
            return 0.0, False
        if gate == "mute":
            return 0.0, True
        return self.barge_in_cfg.echo_gate_ratio * max(self._playing.values()), False

    async def process(self, event: Event) -> AsyncIterator[Event]:
        if isinstance(event, AudioFrame):
            samples = event.samples
            if event.sample_rate != TARGET_RATE:
                if self._resampler is None or self._resampler.src_rate != event.sample_rate:
                    self._resampler = StreamResampler(event.sample_rate, TARGET_RATE)
                samples = self._resampler.process(samples)
            self._received += len(samples)
            self._clock.add(self._received, event.timestamp)
            min_rms, is_muted = self._gate()
            for segment in self.segmenter.push(samples, min_rms=min_rms, is_muted=is_muted):
                yield self._event(segment)
        elif isinstance(event, InputEnded):
            for segment in self.segmenter.flush():
                yield self._event(segment)
        elif isinstance(event, EndOfTurnHint):
            for segment in self.segmenter.apply_hint(event.pause_id, event.hangover_ms):
                yield self._event(segment)
        elif isinstance(event, Mode):
            self._set_mode(event.value)

    def _event(self, segment: Segment) -> Event:
        at = self._clock.at
        if isinstance(segment, SegmentStart):
            return VoiceStarted(onset=at(segment.onset), segment_id=segment.segment_id,
                                stream_onset=segment.onset / TARGET_RATE)
        if isinstance(segment, SegmentProbe):
            return VoiceProbe(onset=at(segment.onset), sample_rate=TARGET_RATE, audio=segment.audio,
                              segment_id=segment.segment_id)
        if isinstance(segment, SegmentPause):
            return VoicePaused(onset=at(segment.onset), pause_start=at(segment.pause_start),
                               sample_rate=TARGET_RATE, audio=segment.audio, segment_id=segment.segment_id,
                               pause_id=segment.pause_id)
        if isinstance(segment, SegmentResume):
            return VoiceResumed(onset=at(segment.onset), at=at(segment.at), segment_id=segment.segment_id)
        if isinstance(segment, SegmentEnd):
            return VoiceEnded(onset=at(segment.onset), speech_end=at(segment.speech_end), decided_at=now(),
                              sample_rate=TARGET_RATE, audio=segment.audio, is_cut=segment.is_cut,
                              segment_id=segment.segment_id, stream_end=segment.speech_end / TARGET_RATE)
        return VoiceDropped(onset=at(segment.onset), speech_end=at(segment.speech_end), segment_id=segment.segment_id)
