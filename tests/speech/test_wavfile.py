"""Reading WAV files of every common shape, and one clear line for the broken ones."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.resample import StreamResampler, resample
from assistant.audio.wavfile import read_wav, write_wav
from assistant.errors import BadInputError

RATE = 16000


def tone(rate: int, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def riff(fmt_code: int, channels: int, rate: int, bits: int, data: bytes, extensible: bool = False,
         extra_chunks: bytes = b"", data_size: int | None = None) -> bytes:
    block = channels * bits // 8
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0)
        fmt += struct.pack("<H", fmt_code) + guid_tail
    else:
        fmt = struct.pack("<HHIIHH", fmt_code, channels, rate, rate * block, block, bits)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", size) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encode(signal: np.ndarray, encoding: str, bits: int) -> bytes:
    if encoding == "float":
        return signal.astype("<f4" if bits == 32 else "<f8").tobytes()
    if bits == 8:
        return np.clip(signal * 128 + 128, 0, 255).astype(np.uint8).tobytes()
    if bits == 16:
        return (signal * 32767).astype("<i2").tobytes()
    if bits == 24:
        ints = (signal * (2**23 - 1)).astype("<i4")
        return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return (signal * (2**31 - 1)).astype("<i4").tobytes()


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * RATE / len(samples))


@pytest.mark.parametrize(("encoding", "code", "bits"), [
    ("pcm", 1, 8), ("pcm", 1, 16), ("pcm", 1, 24), ("pcm", 1, 32), ("float", 3, 32), ("float", 3, 64)])
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_pcm_or_float_wav_becomes_16k_mono(tmp_path: Path, encoding: str, code: int, bits: int, rate: int) -> None:
    left, right = tone(rate, freq=440.0), tone(rate, freq=440.0, amp=0.3)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    path = tmp_path / "in.wav"
    path.write_bytes(riff(code, 2, rate, bits, encode(stereo, encoding, bits)))
    samples = read_wav(path)
    assert samples.dtype == np.float32
    assert abs(len(samples) - RATE) <= 1
    assert peak_hz(samples) == pytest.approx(440.0, abs=2.0)
    # The mix of the two channels: amplitude (0.5 + 0.3) / 2.
    assert np.abs(samples[2000:-2000]).max() == pytest.approx(0.4, abs=0.02)


def test_extensible_format_and_metadata_chunks_before_the_data(tmp_path: Path) -> None:
    signal = tone(48000, 0.5)
    listing = b"LIST" + struct.pack("<I", 70001) + b"x" * 70001 + b"\x00"  # odd size, padded, > 64 KiB
    path = tmp_path / "ext.wav"
    path.write_bytes(riff(1, 1, 48000, 24, encode(signal, "pcm", 24), extensible=True, extra_chunks=listing))
    samples = read_wav(path)
    assert len(samples) == RATE // 2
    assert peak_hz(samples) == pytest.approx(440.0, abs=3.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_telephone_audio(tmp_path: Path, encoding: str) -> None:
    import audioop  # deprecated but still the reference G.711 encoder in Python 3.11

    pcm = (tone(8000) * 32767).astype("<i2").tobytes()
    data = audioop.lin2ulaw(pcm, 2) if encoding == "mulaw" else audioop.lin2alaw(pcm, 2)
    path = tmp_path / "tel.wav"
    path.write_bytes(riff(7 if encoding == "mulaw" else 6, 1, 8000, 8, data))
    samples = read_wav(path)
    assert len(samples) == RATE
    assert peak_hz(samples) == pytest.approx(440.0, abs=2.0)
    assert np.abs(samples[2000:-2000]).max() == pytest.approx(0.5, abs=0.03)


def test_streamed_wav_with_unknown_data_size_is_read_to_the_end(tmp_path: Path) -> None:
    data = encode(tone(16000, 0.25), "pcm", 16)
    path = tmp_path / "stream.wav"
    path.write_bytes(riff(1, 1, 16000, 16, data, data_size=0xFFFFFFFF))
    assert len(read_wav(path)) == 4000


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    signal = tone(RATE, 0.5).astype(np.float32)
    back = read_wav(write_wav(tmp_path / "rt.wav", signal, RATE))
    assert np.abs(back - signal).max() < 1e-4


def _assert_one_clear_line(exc: pytest.ExceptionInfo[BadInputError], path: Path, *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message
    assert exc.value.exit_code == 2


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(BadInputError) as exc:
        read_wav(path)
    _assert_one_clear_line(exc, path, "empty")


def test_header_only_wav_holds_no_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
    with pytest.raises(BadInputError) as exc:
        read_wav(path)
    _assert_one_clear_line(exc, path, "no audio")


@pytest.mark.parametrize("cut", [6, 30, 200])
def test_truncated_file(tmp_path: Path, cut: int) -> None:
    whole = riff(1, 1, 16000, 16, encode(tone(16000, 0.1), "pcm", 16))
    path = tmp_path / "cut.wav"
    path.write_bytes(whole[:cut])
    with pytest.raises(BadInputError) as exc:
        read_wav(path)
    _assert_one_clear_line(exc, path, "truncated")


@pytest.mark.parametrize(("content", "kind"), [
    (b"hello, this is not audio at all\n", "text"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(100), "MP3"),
    (bytes(range(256)), "not a WAV"),
])
def test_not_a_wav(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "thing.wav"
    path.write_bytes(content)
    with pytest.raises(BadInputError) as exc:
        read_wav(path)
    _assert_one_clear_line(exc, path, "not a WAV file", kind)


def test_compressed_wav_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "adpcm.wav"
    path.write_bytes(riff(0x0011, 1, 16000, 4, bytes(400)))
    with pytest.raises(BadInputError) as exc:
        read_wav(path)
    _assert_one_clear_line(exc, path, "IMA ADPCM", "ffmpeg")


def test_absurdly_long_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    path.write_bytes(riff(1, 1, 16000, 16, encode(tone(16000, 3.0), "pcm", 16)))
    with pytest.raises(BadInputError) as exc:
        read_wav(path, max_seconds=2.0)
    _assert_one_clear_line(exc, path, "limit")
    assert len(read_wav(path, max_seconds=4.0)) == 48000


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as exc:
        read_wav(tmp_path / "nope.wav")
    _assert_one_clear_line(exc, tmp_path / "nope.wav", "no such file")


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 24000, 8000])
def test_stream_resampler_matches_whole_signal_resampling(rate: int) -> None:
    rng = np.random.default_rng(rate)
    signal = rng.standard_normal(rate // 2).astype(np.float32) * 0.3
    stream = StreamResampler(rate)
    pieces, start = [], 0
    while start < len(signal):
        size = int(rng.integers(1, 1500))
        pieces.append(stream.process(signal[start:start + size]))
        start += size
    pieces.append(stream.flush())
    whole = resample(signal, rate)
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(whole)
    assert np.abs(streamed - whole).max() < 1e-5
