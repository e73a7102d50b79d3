"""A speech-emotion tagger from prosody alone (pitch, loudness, rhythm): no neural model, no download.

Why it exists: no trained speech-emotion model is published on PyPI, and the cpu profile must work from
packages alone. This tagger is plain signal processing and far weaker than a trained wav2vec2 model:
prosody says a lot about *arousal* (how activated the speaker is) and little about *valence* (pleasant or
not). Use ``emotion.backend: transformers`` with a real model where one can be downloaded.

How it works, per utterance (16 kHz mono):

1. Frames of 40 ms every 10 ms. Loudness is each frame's RMS in dBFS; frames within 35 dB of the loudest
   (and above -55 dBFS) count as speech.
2. Pitch (F0) of each speech frame by normalised autocorrelation, the method of Boersma (1993) that Praat
   uses: the Hann-windowed frame's autocorrelation divided by the window's own, searched between 60 and
   400 Hz with Praat's octave cost (0.01 per octave, favouring the higher candidate) and refined by
   parabolic interpolation; a frame is voiced when the peak is at least 0.45.
3. Features: pitch variability (standard deviation in semitones around the utterance median, which is
   independent of the speaker's voice height), pitch slope (semitones per second, a final rise or fall),
   mean loudness of speech frames (dBFS), loudness variability (dB), and syllable rate (loudness peaks
   per second of speech).
4. Arousal (how activated the speaker sounds) in [-1, 1] from those features against reference values for
   calm conversational speech (``REFERENCE``): a wide pitch range, lively loudness contours and a fast
   rhythm are aroused; a narrow pitch range, a slow rhythm and a falling contour are low. The mean
   loudness is left out: it says more about the microphone, its gain control and the distance to it than
   about the speaker.
5. Scores for what arousal can tell, and no more: ``tired`` (low energy), ``neutral`` and ``excited`` (high
   energy, which may be joy as well as anger: prosody cannot tell them apart). Each is at most
   ``MAX_SCORE``, so a verdict from prosody alone is never presented as near-certain; and the tagger says
   it is not calibrated (``is_calibrated``), so the page does not show its label as a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
FRAME_S = 0.040
HOP_S = 0.010
F0_MIN, F0_MAX = 60.0, 400.0
VOICING_THRESHOLD = 0.45
OCTAVE_COST = 0.01

#: Feature values of calm conversational speech (arousal 0).
REFERENCE = {"pitch_sd": 2.5, "loudness_sd": 8.0, "syllable_rate": 3.8, "pitch_slope": -1.5}

#: Arousal beyond which speech counts as low (tired) or high (excited), and how gradually (logistic width).
AROUSAL_EDGE = 0.3
AROUSAL_WIDTH = 0.1
#: The most a prosody verdict may claim: arousal is a weak cue, and no label of it is near-certain.
MAX_SCORE = 0.6


@dataclass(frozen=True, slots=True)
class ProsodyFeatures:
    """What the tagger measured on one utterance."""

    f0_median_hz: float
    pitch_sd: float          # semitones
    pitch_slope: float       # semitones per second
    loudness_db: float       # mean dBFS of speech frames
    loudness_sd: float       # dB
    syllable_rate: float     # loudness peaks per second of speech
    voiced_fraction: float   # voiced frames / speech frames
    speech_s: float

    @property
    def arousal(self) -> float:
        ref = REFERENCE
        z = (0.45 * (self.pitch_sd - ref["pitch_sd"]) / 1.5
             + 0.15 * (self.loudness_sd - ref["loudness_sd"]) / 3.0
             + 0.30 * (self.syllable_rate - ref["syllable_rate"]) / 1.5
             + 0.10 * float(np.clip(self.pitch_slope - ref["pitch_slope"], -6, 6)) / 3.0)
        return float(np.tanh(z))


def _frames(audio: np.ndarray, size: int, hop: int) -> np.ndarray:
    if len(audio) < size:
        audio = np.pad(audio, (0, size - len(audio)))
    count = 1 + (len(audio) - size) // hop
    index = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
    return audio[index]


def estimate_f0(frames: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz, 0 where unvoiced) and the voicing strength of each frame (rows of ``frames``)."""
    size = frames.shape[1]
    window = np.hanning(size)
    n_fft = 1 << int(np.ceil(np.log2(2 * size)))
    centred = (frames - frames.mean(axis=1, keepdims=True)) * window
    spectrum = np.fft.rfft(centred, n_fft, axis=1)
    ac = np.fft.irfft(np.abs(spectrum) ** 2, n_fft, axis=1)[:, :size]
    ac_window = np.fft.irfft(np.abs(np.fft.rfft(window, n_fft)) ** 2, n_fft)[:size]
    energy = ac[:, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(energy > 1e-12, ac / np.maximum(energy, 1e-12), 0.0) / (ac_window / ac_window[0])
    lag_min = int(np.floor(sample_rate / F0_MAX))
    lag_max = min(int(np.ceil(sample_rate / F0_MIN)), size // 2)
    lags = np.arange(lag_min - 1, lag_max + 2)
    r_lags = r[:, lags]
    centre, left, right = r_lags[:, 1:-1], r_lags[:, :-2], r_lags[:, 2:]
    # Each local maximum, refined by parabolic interpolation (its height too: a peak between two samples
    # of a high voice would otherwise lose to its own octave below).
    is_peak = (centre > left) & (centre >= right)
    denom = left - 2 * centre + right
    shift = np.clip(np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0),
                    -0.5, 0.5)
    height = centre - 0.25 * (left - right) * shift
    lag = lags[1:-1][None, :] + shift
    cost = OCTAVE_COST * np.log2(F0_MIN * lag / sample_rate)  # <= 0: the higher candidate gets a bonus
    score = np.where(is_peak, height - cost, -np.inf)
    best = np.argmax(score, axis=1)
    rows = np.arange(len(best))
    strength = np.where(np.isfinite(score[rows, best]), height[rows, best], 0.0)
    lag = lag[rows, best]
    f0 = np.where(strength >= VOICING_THRESHOLD, sample_rate / np.maximum(lag, 1.0), 0.0)
    return f0, strength


def analyse(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> ProsodyFeatures | None:
    """Measure one utterance; None when it holds too little voiced speech to say anything."""
    from scipy.signal import find_peaks

    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    size, hop = int(FRAME_S * sample_rate), int(HOP_S * sample_rate)
    frames = _frames(audio, size, hop)
    level = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-10)
    is_speech = level > max(level.max() - 35.0, -55.0)
    if is_speech.sum() < 10:
        return None
    f0, _strength = estimate_f0(frames[is_speech], sample_rate)
    voiced = f0 > 0
    if voiced.sum() < 5:
        return None
    times = np.flatnonzero(is_speech)[voiced] * HOP_S
    median = float(np.median(f0[voiced]))
    semitones = 12 * np.log2(f0[voiced] / median)
    # Octave jumps that survived the octave cost would dominate the spread: keep within +-12 semitones.
    keep = np.abs(semitones) <= 12
    semitones, times = semitones[keep], times[keep]
    slope = float(np.polyfit(times, semitones, 1)[0]) if len(times) >= 5 and np.ptp(times) > 0.2 else 0.0
    speech_s = float(is_speech.sum() * HOP_S)
    envelope = np.convolve(level, np.ones(5) / 5, mode="same")
    peaks, _ = find_peaks(np.where(is_speech, envelope, envelope.min()), prominence=3.0, distance=8)
    return ProsodyFeatures(
        f0_median_hz=median,
        pitch_sd=float(np.std(semitones)),
        pitch_slope=slope,
        loudness_db=float(level[is_speech].mean()),
        loudness_sd=float(level[is_speech].std()),
        syllable_rate=len(peaks) / speech_s,
        voiced_fraction=float(voiced.mean()),
        speech_s=speech_s,
    )


def label_scores(arousal: float) -> dict[str, float]:
    """Modest scores for low (``tired``), ordinary (``neutral``) and high (``excited``) arousal."""
    def edge(x: float) -> float:
        return float(1.0 / (1.0 + np.exp(-(x - AROUSAL_EDGE) / AROUSAL_WIDTH)))

    tired, excited = MAX_SCORE * edge(-arousal), MAX_SCORE * edge(arousal)
    return {"neutral": 1.0 - tired - excited, "tired": tired, "excited": excited}


class ProsodyEmotionTagger:
    """EmotionTagger from pitch range, loudness contour and rhythm; labels are already canonical.

    Not calibrated: its scores are a heuristic's, not probabilities measured on labelled speech."""

    is_calibrated = False

    def load(self) -> None:
        import scipy.signal  # noqa: F401 - fail early if scipy is missing

    def scores(self, audio: np.ndarray) -> dict[str, float]:
        features = analyse(audio)
        if features is None:
            return {"neutral": 1.0}
        return label_scores(features.arousal)
