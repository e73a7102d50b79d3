"""Reading any WAV file as 16 kHz mono float32 (and writing simple 16-bit ones), with one-line errors."""

from __future__ import annotations

import os
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from assistant.audio.resample import TARGET_RATE, resample
from assistant.errors import BadInputError

#: The longest WAV file read by default (one hour); sources take a ``max_seconds`` to change it.
DEFAULT_MAX_SECONDS = 3600.0

_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
_FORMAT_NAMES = {0x0002: "MS ADPCM", 0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0050: "MPEG", 0x0055: "MP3"}
_CONVERT = "convert it with `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`"


@dataclass(frozen=True)
class WavInfo:
    """What a WAV header says."""

    sample_rate: int
    channels: int
    bits: int
    encoding: str  # pcm | float | alaw | mulaw
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _bad(path: Path, what: str) -> BadInputError:
    return BadInputError(f"{path}: {what}")


def _guess_kind(head: bytes) -> str:
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "an MP3 file"
    if head.startswith(b"OggS"):
        return "an Ogg file"
    if head.startswith(b"fLaC"):
        return "a FLAC file"
    if head[4:8] == b"ftyp":
        return "an MP4/M4A file"
    if head.startswith(b"RIFX"):
        return "a big-endian RIFX file"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return "not a WAV file"


def _parse_header(path: Path, src: BinaryIO, file_size: int) -> tuple[WavInfo, int, int]:
    """-> (info, data offset, data size in bytes), walking the RIFF chunks of an open file."""
    if file_size == 0:
        raise _bad(path, "the file is empty — record or export the audio again")
    head = src.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        kind = _guess_kind(head + src.read(4))
        what = "is not a WAV file" if kind == "not a WAV file" else f"is not a WAV file (it looks like {kind})"
        if len(head) < 12 and head[:4] == b"RIFF":
            what = "is truncated (the file ends inside the WAV header)"
        raise _bad(path, f"{what} — {_CONVERT}")
    riff_size = struct.unpack_from("<I", head, 4)[0]
    ds64_data_size: int | None = None
    fmt: bytes | None = None
    pos = 12
    while pos + 8 <= file_size:
        src.seek(pos)
        chunk_head = src.read(8)
        chunk_id, size = chunk_head[:4], struct.unpack_from("<I", chunk_head, 4)[0]
        body = pos + 8
        if chunk_id == b"ds64" and size >= 16:
            ds64_data_size = struct.unpack_from("<Q", src.read(16), 8)[0]
        elif chunk_id == b"fmt ":
            fmt = src.read(min(size, 1024))
            if len(fmt) < 16:
                raise _bad(path, "is truncated (the file ends inside the WAV format chunk)")
        elif chunk_id == b"data":
            if fmt is None:
                raise _bad(path, f"is a broken WAV file (audio data before the format chunk) — {_CONVERT}")
            available = file_size - body
            if ds64_data_size is not None and size == 0xFFFFFFFF:
                size = ds64_data_size
            elif available > 0 and (size == 0xFFFFFFFF or (size == 0 and riff_size in (0, 0xFFFFFFFF))):
                size = available  # written by a streaming recorder that never went back to fix the sizes
            info = _format(path, fmt, size)
            if size > available:
                raise _bad(path, f"is truncated (the header promises {size} bytes of audio, the file holds "
                                 f"{available}) — record or export it again")
            return info, body, size
        pos = body + size + (size & 1)
    if fmt is None:
        raise _bad(path, f"is truncated or broken (no WAV format chunk found) — {_CONVERT}")
    raise _bad(path, "is truncated or broken (no audio data chunk found) — record or export it again")


def _format(path: Path, fmt: bytes, data_size: int) -> WavInfo:
    code, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt, 0)
    if code == _EXTENSIBLE:
        if len(fmt) < 40:
            raise _bad(path, "is a broken WAV file (short extensible format chunk)")
        code = struct.unpack_from("<H", fmt, 24)[0]  # the first two bytes of the SubFormat GUID
    encodings = {_PCM: "pcm", _FLOAT: "float", _ALAW: "alaw", _MULAW: "mulaw"}
    if code not in encodings:
        name = _FORMAT_NAMES.get(code, f"format code 0x{code:04x}")
        raise _bad(path, f"holds {name}-compressed audio, which is not supported — {_CONVERT}")
    encoding = encodings[code]
    if not 1 <= channels <= 64:
        raise _bad(path, f"is a broken WAV file ({channels} channels)")
    if not 1000 <= rate <= 768000:
        raise _bad(path, f"is a broken WAV file (sample rate {rate} Hz)")
    allowed = {"pcm": (8, 16, 24, 32), "float": (32, 64), "alaw": (8,), "mulaw": (8,)}[encoding]
    container = (block_align // channels) * 8 if block_align and block_align % channels == 0 else bits
    if container not in allowed:
        raise _bad(path, f"holds {bits}-bit {encoding} audio, which is not supported — {_CONVERT}")
    return WavInfo(sample_rate=rate, channels=channels, bits=container, encoding=encoding,
                   frames=data_size // (channels * container // 8))


def _g711_table(encoding: str) -> np.ndarray:
    """The 256-entry decode table for A-law or mu-law bytes (ITU-T G.711), as float32 in [-1, 1]."""
    codes = np.arange(256, dtype=np.int32)
    if encoding == "mulaw":
        u = ~codes & 0xFF
        exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        values = np.where(u & 0x80, -magnitude, magnitude)
    else:
        a = codes ^ 0x55
        exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
        magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
        values = np.where(a & 0x80, magnitude, -magnitude)
    return (values / 32768.0).astype(np.float32)


def _decode(raw: np.ndarray, info: WavInfo) -> np.ndarray:
    """Raw bytes of the data chunk -> float32 samples, shape (frames, channels)."""
    usable = info.frames * info.channels * (info.bits // 8)
    raw = raw[:usable]
    if info.encoding in ("alaw", "mulaw"):
        samples = _g711_table(info.encoding)[raw]
    elif info.encoding == "float":
        samples = raw.view("<f4" if info.bits == 32 else "<f8").astype(np.float32)
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    elif info.bits == 8:
        samples = (raw.astype(np.float32) - 128.0) / 128.0
    elif info.bits == 16:
        samples = raw.view("<i2").astype(np.float32) / 32768.0
    elif info.bits == 24:
        triples = raw.reshape(-1, 3).astype(np.int32)
        ints = (triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)  # sign lands in bit 31
        samples = (ints >> 8).astype(np.float32) / 8388608.0
    else:
        samples = raw.view("<i4").astype(np.float32) / 2147483648.0
    frames: np.ndarray = samples.reshape(-1, info.channels)
    return frames


def read_wav_info(path: str | os.PathLike[str]) -> tuple[WavInfo, int, int]:
    """Check a WAV file's header: -> (info, data offset, data size). Raises BadInputError (one line)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if not path.is_file():
        raise BadInputError(f"{path}: is not a file")
    try:
        file_size = path.stat().st_size
        with path.open("rb") as src:
            return _parse_header(path, src, file_size)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_wav(path: str | os.PathLike[str], max_seconds: float = DEFAULT_MAX_SECONDS,
             sample_rate: int = TARGET_RATE) -> np.ndarray:
    """Read any PCM/float/G.711 WAV (any rate, any channels) as mono float32 at ``sample_rate``.

    Raises BadInputError with one line for a missing, empty, truncated, compressed, non-WAV file, or one
    longer than ``max_seconds``.
    """
    path = Path(path)
    info, offset, size = read_wav_info(path)
    if info.frames == 0:
        raise _bad(path, "holds no audio (0 samples)")
    if info.duration_s > max_seconds:
        raise _bad(path, f"is {info.duration_s / 60:.1f} minutes long, over the {max_seconds / 60:.0f}-minute "
                         f"limit — cut it into shorter files")
    try:
        raw = np.fromfile(path, dtype=np.uint8, count=size, offset=offset)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot be read ({exc})") from None
    if raw.size < size:
        raise _bad(path, "is truncated (the file changed while it was read)")
    samples = _decode(raw, info)
    mono = samples[:, 0] if info.channels == 1 else samples.mean(axis=1, dtype=np.float32)
    return resample(np.ascontiguousarray(mono), info.sample_rate, sample_rate)


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono float32 [-1, 1] (or int16) samples as a 16-bit PCM WAV file."""
    path = Path(path)
    pcm = samples if samples.dtype == np.int16 else (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.astype("<i2").tobytes())
    return path
