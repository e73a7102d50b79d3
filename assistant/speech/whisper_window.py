"""Whisper on an encoder window fitted to the utterance, through faster-whisper's objects and CTranslate2.

faster-whisper pads every segment to Whisper's 30 s window (3000 mel frames), so a 3 s utterance costs the
encoder as much as 30 s. CTranslate2's ``Whisper.encode`` accepts fewer frames: here the utterance's frames
plus a margin of zero frames (what faster-whisper pads with) are encoded, then the decoder runs on that
shorter encoder output with the prompt faster-whisper would build (previous text, sot, language, task,
no-timestamps) and its suppressed tokens. The decode is bounded by the audio's length, so a degenerate
decode cannot run for 448 tokens. :func:`degeneracy` says when a fitted result should be redone on the full
window.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from assistant.text import normalise_phrase

#: Whisper's full window: 30 s of 10 ms mel frames.
FULL_FRAMES = 3000
FRAMES_PER_S = 100
SAMPLE_RATE = 16000
#: Decoder budget: tokens per second of audio plus a constant. Speech measured here runs at 3-5 tokens/s
#: (English and Japanese); a decode that reaches the budget is cut off and counted as degenerate. A short
#: window makes Whisper loop over the utterance until the budget ends, so the budget is also its cost.
TOKENS_PER_S = 6.0
TOKENS_BASE = 6
#: Whisper's decoder context (prompt + generated tokens).
MAX_LENGTH = 448

# A unit of two or more characters said four times in a row, or one character six times: the loops
# Whisper falls into on a window it cannot read.
_REPEATED = re.compile(r"(.{2,}?)\1{3,}|(.)\2{5,}")


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """How many frames the encoder sees: the utterance plus ``margin_s``, at least ``floor_s``, rounded up
    to a multiple of ``step`` frames (even, as the encoder's stride-2 convolution wants), at most 30 s."""

    margin_s: float = 0.5
    floor_s: float = 5.0
    step: int = 50

    def frames(self, content_frames: int) -> int:
        wanted = max(content_frames + round(self.margin_s * FRAMES_PER_S), round(self.floor_s * FRAMES_PER_S))
        wanted = math.ceil(wanted / self.step) * self.step
        return min(FULL_FRAMES, wanted)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One greedy/beam decode of one encoder window, with the figures the fallback and the guard need."""

    text: str
    language: str
    language_probability: float
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    tokens: int
    #: True when the decode stopped at its token budget instead of at end-of-text.
    truncated: bool
    window_frames: int
    #: How many times the decoder said the whole text over before it was cut back to one (1: it did not loop).
    loops: int = 1


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a fitted window's result is redone on the full window (faster-whisper's fallback figures)."""

    compression_ratio: float = 2.4
    no_speech_prob: float = 0.6
    avg_logprob: float = -1.0


def is_repetitive(text: str) -> bool:
    """True for text that loops: a unit of 2+ characters four times in a row, or one character six times."""
    return _REPEATED.search(normalise_phrase(text)) is not None


def _through(text: str, count: int) -> str:
    """The start of ``text`` holding its first ``count`` letters/digits, with the punctuation after them."""
    seen = 0
    for index, char in enumerate(text):
        if seen >= count and (char.isspace() or normalise_phrase(char)):
            return text[:index].strip()
        seen += len(normalise_phrase(char))
    return text.strip()


def collapse_loop(text: str) -> tuple[str, int]:
    """``(unit, times)`` when the whole text is one unit said again and again ("Good morning. Good morning.
    Good mor"), which a short window makes Whisper do: three times or more, or twice for a unit of six or
    more letters — the second time may break off, once six of its letters are said (``times`` counts it);
    else ``(text, 1)``. Short doubles people do say ("はいはい", "bye bye") stay, and so does a sentence
    that merely ends as it began ("はい、そうですね。はい")."""
    normal = normalise_phrase(text)
    length = len(normal)
    for period in range(1, length):
        repeated = length - period
        if repeated < min(period, 6):
            break
        if normal[period:] == normal[:repeated]:
            times = length / period
            if times >= 3 or period >= 6:
                return _through(text, period), math.ceil(times)
            break
    return text, 1


def degeneracy(decoded: Decoded, limits: Thresholds = Thresholds()) -> str | None:
    """Why ``decoded`` looks degenerate (a reason to try the full window), or None when it looks sound."""
    if not normalise_phrase(decoded.text):
        return "empty text"
    if decoded.truncated:
        return f"decode ran to its budget of {decoded.tokens} tokens"
    if decoded.compression_ratio > limits.compression_ratio:
        return f"compression ratio {decoded.compression_ratio:.2f} > {limits.compression_ratio}"
    if is_repetitive(decoded.text):
        return "repeated text"
    if decoded.no_speech_prob > limits.no_speech_prob:
        return f"no-speech probability {decoded.no_speech_prob:.2f} > {limits.no_speech_prob}"
    if decoded.avg_logprob < limits.avg_logprob:
        return f"average log-probability {decoded.avg_logprob:.2f} < {limits.avg_logprob}"
    return None


def token_budget(duration_s: float, prompt_tokens: int) -> int:
    """New tokens a decode of ``duration_s`` of audio may produce, within Whisper's context."""
    wanted = TOKENS_BASE + math.ceil(TOKENS_PER_S * max(duration_s, 0.0))
    return max(1, min(wanted, MAX_LENGTH - prompt_tokens))


class WindowDecoder:
    """Features, encoder and decoder steps on a loaded ``faster_whisper.WhisperModel`` (blocking calls)."""

    def __init__(self, model: Any, beam_size: int = 1, hotwords: str | None = None) -> None:
        self.model = model
        self.beam_size = beam_size
        self.hotwords = hotwords

    @property
    def is_multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features of the utterance alone (no padding to 30 s), as faster-whisper computes them."""
        features = self.model.feature_extractor(audio)
        return features[:, : max(features.shape[-1] - 1, 0)]  # faster-whisper's content frames

    def encode(self, features: np.ndarray, frames: int) -> Any:
        """The encoder output for ``features`` padded (zero frames) or trimmed to ``frames``."""
        from faster_whisper.audio import pad_or_trim

        return self.model.encode(pad_or_trim(features, frames))

    def detect_language(self, encoder_output: Any) -> tuple[str, float]:
        """The most likely language and its probability."""
        token, probability = self.model.model.detect_language(encoder_output)[0][0]
        return token[2:-2], float(probability)

    def tokenizer(self, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        return Tokenizer(self.model.hf_tokenizer, self.is_multilingual, task="transcribe", language=language)

    def prompt(self, tokenizer: Any, previous_text: str | None) -> list[int]:
        """faster-whisper's prompt: [<|startofprev|> hotwords previous] sot lang task <|notimestamps|>."""
        previous = tokenizer.encode(" " + previous_text.strip()) if previous_text and previous_text.strip() else []
        return self.model.get_prompt(tokenizer, previous, without_timestamps=True, hotwords=self.hotwords)

    def generate(self, encoder_output: Any, language: str, language_probability: float,
                 previous_text: str | None, duration_s: float, frames: int) -> Decoded:
        """One decode (temperature 0) of ``encoder_output`` in ``language``."""
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        tokenizer = self.tokenizer(language)
        prompt = self.prompt(tokenizer, previous_text)
        budget = token_budget(duration_s, len(prompt))
        # CTranslate2 (4.8) stops after min(max_length - prompt + 1, max_length // 2) new tokens.
        max_length = min(MAX_LENGTH, max(len(prompt) + budget - 1, 2 * budget))
        budget = min(max_length - len(prompt) + 1, max_length // 2)
        result = self.model.model.generate(
            encoder_output, [prompt], beam_size=self.beam_size, max_length=max_length,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        # faster-whisper's average log-probability from the length-normalised score (length_penalty 1).
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if result.scores else -10.0
        text, loops = collapse_loop(tokenizer.decode(tokens).strip())
        return Decoded(text=text, language=language, language_probability=language_probability,
                       no_speech_prob=float(result.no_speech_prob), avg_logprob=float(avg_logprob),
                       compression_ratio=get_compression_ratio(text) if text else 0.0, tokens=len(tokens),
                       truncated=loops == 1 and len(result.sequences_ids[0]) >= budget, window_frames=frames,
                       loops=loops)
