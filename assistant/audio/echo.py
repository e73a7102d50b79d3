"""Echo cancellation for loudspeakers: WebRTC's audio processing (AEC3, noise suppression, high-pass filter) from
the ``livekit`` package, in-process.

The speaker's device callback hands over exactly what it plays (:meth:`EchoCanceller.played`, any thread);
the microphone's frames go through :meth:`EchoCanceller.clean` on the event loop, which first feeds the
canceller every played block that has arrived (the far end), then the microphone in 10 ms frames (the near
end). All calls into the canceller happen on that one thread, in that order.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import numpy as np

from assistant.audio.resample import TARGET_RATE, StreamResampler
from assistant.errors import MissingExtra

log = logging.getLogger(__name__)

#: The canceller's frame: 10 ms at 16 kHz.
FRAME = TARGET_RATE // 100
#: Far-end audio kept at most (played blocks the microphone has not caught up with): 2 s.
MAX_PENDING_S = 2.0


def echo_cancellation_available() -> bool:
    """Whether the ``livekit`` package (its WebRTC audio processing) can be imported."""
    try:
        import livekit.rtc  # noqa: F401
    except ImportError:
        return False
    return True


class EchoCanceller:
    """One WebRTC audio processing module shared by the speaker (the reference) and the microphone."""

    def __init__(self, delay_ms: int = 0, noise_suppression: bool = True) -> None:
        try:
            from livekit import rtc
        except ImportError:
            raise MissingExtra("livekit", "echo", "echo cancellation (barge_in.echo_cancellation)") from None
        self._rtc: Any = rtc
        self._apm: Any = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=noise_suppression,
                                                   high_pass_filter=True)
        self.delay_ms = int(delay_ms)
        self._apm.set_stream_delay_ms(self.delay_ms)
        self._delay_changed = False
        self._lock = threading.Lock()
        self._played: deque[tuple[np.ndarray, int]] = deque()
        self._played_samples = 0
        self._far_resampler: StreamResampler | None = None
        self._far_rate: int | None = None
        self._far_rest = np.zeros(0, dtype=np.int16)
        self._near_rest = np.zeros(0, dtype=np.float32)
        #: 10 ms frames processed, for the log and the tests.
        self.far_frames = 0
        self.near_frames = 0

    def set_delay(self, delay_ms: float) -> None:
        """The hint for how long the room takes: from a block handed to the speaker to its echo in the mic
        (any thread; the canceller takes it at its next :meth:`clean`)."""
        self.delay_ms = max(0, min(500, round(delay_ms)))
        self._delay_changed = True

    def played(self, samples: np.ndarray, sample_rate: int) -> None:
        """What the speaker plays now (mono float32, silence included); called from the device's thread."""
        with self._lock:
            self._played.append((samples.astype(np.float32, copy=True), int(sample_rate)))
            self._played_samples += len(samples)
            while self._played and self._played_samples > MAX_PENDING_S * sample_rate:
                dropped, _ = self._played.popleft()
                self._played_samples -= len(dropped)

    def _feed_far(self) -> None:
        with self._lock:
            blocks = list(self._played)
            self._played.clear()
            self._played_samples = 0
        for samples, rate in blocks:
            if rate != self._far_rate:
                self._far_rate = rate
                self._far_resampler = StreamResampler(rate, TARGET_RATE) if rate != TARGET_RATE else None
            at16 = self._far_resampler.process(samples) if self._far_resampler is not None else samples
            pcm = np.concatenate([self._far_rest, _pcm16(at16)])
            count = len(pcm) // FRAME
            for i in range(count):
                frame = self._frame(pcm[i * FRAME:(i + 1) * FRAME])
                self._apm.process_reverse_stream(frame)
                self.far_frames += 1
            self._far_rest = pcm[count * FRAME:]

    def clean(self, samples: np.ndarray) -> np.ndarray:
        """The microphone's 16 kHz float32 samples with the speaker's echo removed (10 ms granularity: a few
        samples may wait for the next call)."""
        if self._delay_changed:
            self._delay_changed = False
            self._apm.set_stream_delay_ms(self.delay_ms)
        self._feed_far()
        data = np.concatenate([self._near_rest, samples]) if self._near_rest.size else samples
        count = len(data) // FRAME
        out = np.empty(count * FRAME, dtype=np.float32)
        for i in range(count):
            frame = self._frame(_pcm16(data[i * FRAME:(i + 1) * FRAME]))
            self._apm.process_stream(frame)
            out[i * FRAME:(i + 1) * FRAME] = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
            self.near_frames += 1
        self._near_rest = data[count * FRAME:].astype(np.float32, copy=True)
        return out

    @property
    def held_s(self) -> float:
        """How much of the microphone's audio waits for the next call (less than 10 ms)."""
        return len(self._near_rest) / TARGET_RATE

    def _frame(self, pcm: np.ndarray) -> Any:
        return self._rtc.AudioFrame(bytearray(pcm.astype("<i2").tobytes()), TARGET_RATE, 1, FRAME)


def _pcm16(samples: np.ndarray) -> np.ndarray:
    pcm: np.ndarray = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    return pcm


def make_echo_canceller(setting: str, is_mic: bool, is_speaker: bool) -> EchoCanceller | None:
    """The canceller ``barge_in.echo_cancellation`` asks for: ``auto`` when the microphone and the speaker are
    both in use and ``livekit`` is installed, ``on`` always with the two (an error without ``livekit``), ``off``
    never."""
    if setting == "off" or not (is_mic and is_speaker):
        return None
    if setting == "auto" and not echo_cancellation_available():
        log.info("echo cancellation is off: the 'livekit' package is not installed (pip install 'saijin[echo]'); "
                 "with loudspeakers use headphones or barge_in.echo_gate: mute")
        return None
    return EchoCanceller()
