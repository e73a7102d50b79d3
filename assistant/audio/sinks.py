"""Where played audio goes: the speaker, a WAV file, or nowhere (the page plays it) — each with its own clock.

A sink takes short blocks (<= 20 ms) so that a stop takes effect within one block. Every sink records
each block it played on its own sample clock (``blocks``, ``position_s``, ``position_at``): that is how
barge-in timing is measured. A realtime sink plays at the audio clock: ``write`` returns when the block
has been played.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import wave
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.devices import choose_device, quiet_alsa
from assistant.audio.echo import EchoCanceller
from assistant.audio.resample import resample
from assistant.errors import MissingExtra, SaijinError
from assistant.events import now

log = logging.getLogger(__name__)

#: How many block records a sink keeps (at 20 ms a block: about half an hour).
MAX_RECORDS = 100_000


@dataclass(frozen=True, slots=True)
class SinkBlock:
    """One block as the sink played it: where on its sample clock, how long, and when (monotonic)."""

    turn_id: int | None
    sentence_index: int | None
    start_s: float
    duration_s: float
    played_at: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


class AudioSink:
    """Base of every sink: block records, the sample clock, and pacing at the audio clock when realtime."""

    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        #: The rate every block must have, or None for any rate.
        self.sample_rate: int | None = None
        self.blocks: deque[SinkBlock] = deque(maxlen=MAX_RECORDS)
        self._position_s = 0.0
        self._due: float | None = None

    @property
    def position_s(self) -> float:
        """Seconds of audio played so far, on the sink's own sample clock."""
        return self._position_s

    def position_at(self, moment: float) -> float:
        """Where the sink's sample clock stood at monotonic time ``moment`` (between blocks: the last end)."""
        position = 0.0
        for block in reversed(self.blocks):
            if block.played_at <= moment:
                return min(block.end_s, block.start_s + (moment - block.played_at))
        return position

    async def open(self) -> None:
        """Acquire the device or file."""

    async def close(self) -> None:
        """Release the device or file; everything written is complete afterwards."""

    def convert(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        """Bring a whole sentence to the rate this sink plays (before it is cut into blocks)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.sample_rate is None or self.sample_rate == sample_rate:
            return samples, sample_rate
        return np.clip(resample(samples, sample_rate, self.sample_rate), -1.0, 1.0), self.sample_rate

    def halt(self) -> None:
        """Drop whatever is buffered but not yet heard (an interruption); the next write starts fresh."""
        self._due = None

    async def write(self, block: np.ndarray, sample_rate: int, turn_id: int | None = None,
                    sentence_index: int | None = None) -> None:
        """Play one block; a realtime sink returns when it has been played."""
        duration = len(block) / sample_rate
        played_at = await self._output(block, sample_rate)
        self.blocks.append(SinkBlock(turn_id, sentence_index, self._position_s, duration, played_at))
        self._position_s += duration
        if self.realtime:
            self._due = played_at + duration
            delay = self._due - now()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _output(self, block: np.ndarray, sample_rate: int) -> float:
        """Hand the block to the device or file; return the monotonic time its first sample plays."""
        start = now()
        if self.realtime and self._due is not None and self._due > start - 0.05:
            return self._due  # continuous playback: keep to the audio clock, do not drift
        return start


class NullSink(AudioSink):
    """Plays nothing (the page plays the audio, or --no-voice), but keeps the clock for timings."""

    def __init__(self, realtime: bool = True) -> None:
        super().__init__(realtime)


class WavFileSink(AudioSink):
    """Writes every spoken reply into one 16-bit mono WAV file; realtime paces it like a speaker."""

    def __init__(self, path: str | Path, realtime: bool = False, sample_rate: int | None = None) -> None:
        super().__init__(realtime)
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._file: wave.Wave_write | None = None

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SaijinError(f"{self.path}: cannot create the output folder ({exc.strerror}) — choose another --output") from None

    def convert(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        if self.sample_rate is None:
            self.sample_rate = int(sample_rate)  # the first sentence fixes the file's rate
        return super().convert(samples, sample_rate)

    def _ensure_file(self, sample_rate: int) -> wave.Wave_write:
        if self._file is None:
            try:
                out = wave.open(str(self.path), "wb")  # noqa: SIM115 - open until close()
            except OSError as exc:
                raise SaijinError(f"{self.path}: cannot write the output file ({exc.strerror}) — choose another --output") from None
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(int(sample_rate))
            self._file = out
        return self._file

    async def _output(self, block: np.ndarray, sample_rate: int) -> float:
        if self.sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(f"block at {sample_rate} Hz for a {self.sample_rate} Hz file: convert() it first")
        pcm = (np.clip(block, -1.0, 1.0) * 32767.0).astype("<i2")
        self._ensure_file(sample_rate).writeframes(pcm.tobytes())
        return await super()._output(block, sample_rate)

    async def close(self) -> None:
        if self._file is None:
            self._ensure_file(self.sample_rate or 16000)  # an empty but valid WAV file
        if self._file is not None:
            self._file.close()
            self._file = None


class SpeakerSink(AudioSink):
    """The sound card (sounddevice): a small buffer the device pulls from, at the device's own rate."""

    def __init__(self, device: str | int | None = None, lead_ms: int = 40, latency_ms: int = 100,
                 echo: EchoCanceller | None = None) -> None:
        super().__init__(realtime=True)
        self.device = device
        #: Told exactly what the device plays (the echo canceller's reference), silence included.
        self.echo = echo
        self._lead_s = lead_ms / 1000
        #: The device's own buffer: what it keeps queued so that a busy CPU does not starve it.
        self._device_latency_s = latency_ms / 1000
        #: How many times the device ran out of audio while a reply was playing (logged, never shown).
        self.underruns = 0
        self._stream: Any = None
        self._lock = threading.Lock()
        self._buffer: deque[np.ndarray] = deque()
        self._buffered = 0
        self._latency_s = 0.0

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        quiet_alsa()  # before PortAudio starts: its probing of ALSA devices prints otherwise
        try:
            import sounddevice as sd
        except ImportError:
            raise MissingExtra("sounddevice", "audio", "playing through the speaker") from None
        except OSError:
            raise SaijinError("the PortAudio library is missing — install it with `apt-get install libportaudio2` "
                              "or use --output FILE.wav") from None
        where = f" {self.device!r}" if self.device is not None else ""
        try:
            choice = choose_device(self.device, "output", sd)
        except SaijinError as exc:
            raise SaijinError(f"no speaker: {exc}; or use --output FILE.wav") from None
        choice.apply()
        try:
            info = sd.query_devices(choice.portaudio, "output")
            rate = int(info["default_samplerate"])
            self._stream = sd.OutputStream(device=choice.portaudio, samplerate=rate, channels=1, dtype="float32",
                                           latency=self._device_latency_s, callback=self._pull)
            self._stream.start()
        except Exception as exc:
            log.debug("opening the output device failed", exc_info=True)
            raise SaijinError(f"no audio output device{where} ({str(exc).splitlines()[0]}) — connect one, set "
                              f"audio.output_device in config/assistant.yaml, or use --output FILE.wav") from None
        self.sample_rate = rate
        self._latency_s = float(self._stream.latency or 0.0)
        if self.echo is not None:  # a played block reaches the room after the device's buffer (and the mic's)
            self.echo.set_delay(self._latency_s * 1000 + 20)
        log.info("playing on %s at %d Hz (latency %.0f ms)", choice.label, rate, self._latency_s * 1000)

    def _pull(self, outdata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        """The device's callback (its own thread): fill ``outdata`` from the buffer, silence when empty."""
        out = outdata[:, 0]
        filled = 0
        with self._lock:
            if status and status.output_underflow:
                self.underruns += 1
                log.debug("speaker underrun (%d so far)", self.underruns)
            while filled < frames and self._buffer:
                head = self._buffer[0]
                take = min(frames - filled, len(head))
                out[filled:filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._buffer.popleft()
                else:
                    self._buffer[0] = head[take:]
            self._buffered -= filled
        out[filled:] = 0.0
        if self.echo is not None and self.sample_rate is not None:
            self.echo.played(out, self.sample_rate)

    def halt(self) -> None:
        with self._lock:
            self._buffer.clear()
            self._buffered = 0
        super().halt()

    async def _output(self, block: np.ndarray, sample_rate: int) -> float:
        if self._stream is None:
            raise SaijinError("the speaker is not open")
        with self._lock:
            ahead = self._buffered / sample_rate
            self._buffer.append(np.asarray(block, dtype=np.float32).copy())
            self._buffered += len(block)
        return now() + ahead + self._latency_s

    async def write(self, block: np.ndarray, sample_rate: int, turn_id: int | None = None,
                    sentence_index: int | None = None) -> None:
        duration = len(block) / sample_rate
        played_at = await self._output(block, sample_rate)
        self.blocks.append(SinkBlock(turn_id, sentence_index, self._position_s, duration, played_at))
        self._position_s += duration
        # Keep only a short lead in the buffer so that a hold or a stop is heard at once.
        while self._buffered / sample_rate > self._lead_s:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await asyncio.to_thread(_close_stream, stream)


def _close_stream(stream: Any) -> None:
    try:
        stream.stop()
    finally:
        stream.close()
