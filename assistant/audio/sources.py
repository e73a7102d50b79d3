"""Audio sources: a WAV file, the microphone, and PCM chunks from the browser, all as 16 kHz AudioFrames.

Every source is a Stage whose ``run()`` emits :class:`AudioFrame` events (mono float32, 16 kHz, a few
tens of milliseconds each) stamped with the moment their last sample was heard, and an
:class:`InputEnded` when the input is over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.devices import choose_device, quiet_alsa
from assistant.audio.echo import EchoCanceller
from assistant.audio.resample import TARGET_RATE, StreamResampler
from assistant.audio.wavfile import DEFAULT_MAX_SECONDS, read_wav
from assistant.errors import BadInputError, SaijinError
from assistant.events import AudioFrame, InputEnded, now
from assistant.stage import Stage, StageContext

log = logging.getLogger(__name__)

_BROWSER_HINT = "use the browser page's microphone instead with `--input browser`"


def _frame_samples(frame_ms: int) -> int:
    if not 5 <= frame_ms <= 200:
        raise ValueError(f"frame_ms must be between 5 and 200 (got {frame_ms})")
    return TARGET_RATE * frame_ms // 1000


class WavSource(Stage):
    """Plays a WAV file into the pipeline, paced like a microphone (``realtime``) or as fast as possible.

    The file is read and checked in ``start()``, so a bad file stops start-up with a BadInputError.
    Real-time frames are stamped with the moment their last sample is due; fast frames with the moment
    they are emitted.
    """

    def __init__(self, path: str | os.PathLike[str], realtime: bool, frame_ms: int = 20,
                 max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        super().__init__()
        self.path = Path(path)
        self.is_realtime = realtime
        self.frame_len = _frame_samples(frame_ms)
        self.max_seconds = max_seconds
        self.samples: np.ndarray | None = None

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        self.samples = await asyncio.to_thread(read_wav, self.path, self.max_seconds)
        log.info("reading %s: %.1f s of audio%s", self.path, len(self.samples) / TARGET_RATE,
                 " in real time" if self.is_realtime else "")

    async def run(self) -> None:
        if self.samples is None:
            raise BadInputError(f"{self.path}: the source was not started")
        async for frame in paced_frames(self.samples, self.frame_len, self.is_realtime):
            self.emit(frame)
        self.emit(InputEnded())


async def paced_frames(samples: np.ndarray, frame_len: int, is_realtime: bool) -> AsyncIterator[AudioFrame]:
    """16 kHz samples as frames, like a microphone: each stamped with when its last sample is heard (paced
    in real time), or as fast as the pipeline takes them."""
    started = now()
    for begin in range(0, len(samples), frame_len):
        block = samples[begin:begin + frame_len]
        if is_realtime:
            heard_at = started + (begin + len(block)) / TARGET_RATE
            delay = heard_at - now()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let the rest of the pipeline breathe
            heard_at = now()
        yield AudioFrame(samples=block, sample_rate=TARGET_RATE, timestamp=heard_at)


class _Framer:
    """Cuts a stream of 16 kHz chunks into fixed frames stamped by when each frame's last sample arrived."""

    def __init__(self, frame_len: int) -> None:
        self.frame_len = frame_len
        self._pending = np.zeros(0, dtype=np.float32)
        self._last_stamp = float("-inf")

    def push(self, chunk: np.ndarray, arrived_at: float) -> list[AudioFrame]:
        """``arrived_at`` is when the chunk's last sample was heard; earlier samples were heard earlier."""
        data = np.concatenate([self._pending, chunk]) if self._pending.size else chunk
        count = len(data) // self.frame_len
        frames = []
        for i in range(count):
            end = (i + 1) * self.frame_len
            stamp = max(arrived_at - (len(data) - end) / TARGET_RATE, self._last_stamp)
            self._last_stamp = stamp
            frames.append(AudioFrame(samples=data[end - self.frame_len:end].copy(), sample_rate=TARGET_RATE,
                                     timestamp=stamp))
        self._pending = data[count * self.frame_len:]
        return frames

    def flush(self, at: float) -> list[AudioFrame]:
        if not self._pending.size:
            return []
        frame = AudioFrame(samples=self._pending, sample_rate=TARGET_RATE, timestamp=max(at, self._last_stamp))
        self._pending = np.zeros(0, dtype=np.float32)
        return [frame]


def _to_float(pcm: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """int16 PCM bytes, an int16 array or a float array -> mono float32."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        raw = bytes(pcm)
        if len(raw) % 2:
            raise BadInputError(f"a PCM chunk of {len(raw)} bytes is not 16-bit audio (odd length)")
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    array = np.asarray(pcm)
    if array.ndim > 1:
        array = array.reshape(len(array), -1).mean(axis=1)
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise BadInputError(f"PCM chunks must be 16-bit integers or floats (got {array.dtype})")


class PcmFeedSource(Stage):
    """Audio pushed in by someone else (the Live2D bridge relaying the browser's microphone).

    ``feed()`` takes 16-bit PCM (bytes or an int16 array) or floats at ``sample_rate``; ``end()`` finishes
    the input (InputEnded follows the audio already fed). Both may be called from any thread. Frames are
    stamped by arrival time.
    """

    def __init__(self, sample_rate: int = TARGET_RATE, frame_ms: int = 20) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self._framer = _Framer(_frame_samples(frame_ms))
        self._resampler = StreamResampler(self.sample_rate, TARGET_RATE)
        self._queue: asyncio.Queue[tuple[np.ndarray, float] | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._lock = threading.Lock()
        self._is_ended = False

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def _put(self, item: tuple[np.ndarray, float] | None) -> None:
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        else:
            self._queue.put_nowait(item)

    def feed(self, pcm: bytes | bytearray | memoryview | np.ndarray) -> None:
        """Add a chunk of audio heard just now."""
        arrived_at = now()
        chunk = _to_float(pcm)
        with self._lock:
            if self._is_ended:
                return
            samples = self._resampler.process(chunk)
            if samples.size:
                self._put((samples, arrived_at))

    def end(self) -> None:
        """No more audio will come."""
        with self._lock:
            if self._is_ended:
                return
            self._is_ended = True
            rest = self._resampler.flush()
            if rest.size:
                self._put((rest, now()))
            self._put(None)

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                for frame in self._framer.flush(now()):
                    self.emit(frame)
                self.emit(InputEnded())
                return
            samples, arrived_at = item
            for frame in self._framer.push(samples, arrived_at):
                self.emit(frame)


class MicSource(Stage):
    """The microphone through PortAudio (``sounddevice``), at 16 kHz mono (resampled if the device can't)."""

    def __init__(self, device: str | int | None = None, frame_ms: int = 20, echo: EchoCanceller | None = None) -> None:
        super().__init__()
        self.device = device
        #: Removes the speaker's voice from what the microphone hears (loudspeakers without headphones).
        self.echo = echo
        self.frame_ms = frame_ms
        self._framer = _Framer(_frame_samples(frame_ms))
        self._queue: asyncio.Queue[tuple[np.ndarray, float] | None] = asyncio.Queue()
        self._stream: Any = None
        self._resampler: StreamResampler | None = None
        self._is_stopping = False

    def _open(self, loop: asyncio.AbstractEventLoop) -> Any:
        quiet_alsa()  # before PortAudio starts: its probing of ALSA devices prints otherwise
        try:
            import sounddevice as sd
        except OSError:
            raise SaijinError(f"no microphone: the PortAudio library is not installed (apt-get install "
                              f"libportaudio2) — {_BROWSER_HINT}") from None
        except ImportError:
            raise SaijinError(f"no microphone: the Python package 'sounddevice' is not installed "
                              f"(pip install 'saijin[audio]') — {_BROWSER_HINT}") from None
        where = "the default input device" if self.device is None else f"input device {self.device!r}"
        try:
            choice = choose_device(self.device, "input", sd)
        except SaijinError as exc:
            raise SaijinError(f"no microphone: {exc}; or {_BROWSER_HINT}") from None
        choice.apply()
        device = choice.portaudio
        info = sd.query_devices(device, kind="input")
        rate = TARGET_RATE
        try:
            sd.check_input_settings(device=device, channels=1, samplerate=TARGET_RATE, dtype="float32")
        except (ValueError, sd.PortAudioError):
            rate = int(info["default_samplerate"])
            self._resampler = StreamResampler(rate, TARGET_RATE)
        block = max(1, rate * self.frame_ms // 1000)

        def callback(data: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            heard_at = now()
            try:  # when the last sample reached the converter, in our clock
                latency = float(time_info.currentTime) - float(time_info.inputBufferAdcTime)
                if time_info.inputBufferAdcTime > 0 and 0 <= latency < 1.0:
                    heard_at = heard_at - latency + frames / rate
                    heard_at = min(heard_at, now())
            except (AttributeError, TypeError):
                pass
            if status:
                log.debug("microphone: %s", status)
            loop.call_soon_threadsafe(self._queue.put_nowait, (data[:, 0].copy(), heard_at))

        def finished() -> None:  # PortAudio stopped the stream: closed by us, or the device went away
            loop.call_soon_threadsafe(self._queue.put_nowait, None)

        try:
            stream = sd.InputStream(device=device, channels=1, samplerate=rate, dtype="float32",
                                    blocksize=block, callback=callback, finished_callback=finished)
            stream.start()
        except (ValueError, sd.PortAudioError) as exc:
            raise SaijinError(f"cannot open {where} ({exc}) — check `saijin doctor` or {_BROWSER_HINT}") from None
        log.info("microphone: %s at %d Hz", choice.label, rate)
        return stream

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        loop = asyncio.get_running_loop()
        self._stream = await asyncio.to_thread(self._open, loop)

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                if self._is_stopping:
                    return
                self.emit(InputEnded())
                raise SaijinError(f"the microphone stopped (was it unplugged?) — plug it in and restart, or "
                                  f"{_BROWSER_HINT}")
            samples, heard_at = item
            if self._resampler is not None:
                samples = self._resampler.process(samples)
            if self.echo is not None:
                samples = self.echo.clean(samples)
                heard_at -= self.echo.held_s  # the last few samples wait for the canceller's next 10 ms
            for frame in self._framer.push(samples, heard_at):
                self.emit(frame)

    async def stop(self) -> None:
        self._is_stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                await asyncio.to_thread(stream.close)
            except Exception:
                log.debug("closing the microphone failed", exc_info=True)
