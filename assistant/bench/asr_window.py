"""The fitted encoder window against Whisper's full 30 s window: CER and time on real synthesised speech.

Run ``python -m assistant.bench.asr_window [--json FILE] [--quick]`` on a quiet machine (under the bench lock).
24 utterances of 1-15 s (12 Japanese spoken by Kokoro, 12 English spoken by Piper joe, cached as WAVs in
``$SAIJIN_CACHE/samples``) are transcribed by each model on both windows; CER is the character edit distance
after NFKC, lower case, no punctuation or spaces. A second part times transcribe() on the 2-3 s clips, also
against faster-whisper's own ``transcribe()`` as this project called it before (two workers, all cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant.audio.resample import TARGET_RATE
from assistant.bench.samples import Sample, SampleSpec, make_sample
from assistant.text import normalise_phrase

log = logging.getLogger(__name__)

#: Silence around each utterance, about what the VAD keeps (pre-roll before, hangover after).
PAD_S = 0.3

JA_TEXTS = (
    "はい。",
    "おはよう。",
    "明日の天気はどうかな。",
    "こんばんは、今日もお疲れ様。",
    "さっきの映画、すごく面白かったね。",
    "姉に電話するのを忘れないように教えて。",
    "今日は朝から雨が降っていて、駅まで歩くのが大変だった。",
    "週末は友達と一緒に海へ行って、美味しい魚を食べる予定です。",
    "最近よく眠れないんだけど、寝る前に何をしたらいいと思う？",
    "昨日の会議では新しい計画について話し合いましたが、結論はまだ出ていません。",
    "子供の頃、毎年夏になると祖母の家に遊びに行って、近くの川で魚を捕まえたり、夜は花火をしたりして過ごしました。",
    "来月から新しい仕事が始まるので、少し緊張しています。でも、新しいことを学べるのは楽しみですし、"
    "きっと大丈夫だと思います。",
)
EN_TEXTS = (
    "Yes.",
    "Good morning.",
    "Please turn on the kitchen lights.",
    "What is the weather like tomorrow morning?",
    "Remind me to call my sister tonight.",
    "Sometimes I forget where I put my keys.",
    "I had a long day at work and I just want to relax now.",
    "Could you tell me a short story about a dragon who loves to bake bread?",
    "Yesterday I went to the market and bought apples, oranges, and a loaf of fresh bread.",
    "My friend and I are planning a trip to the mountains next month, and we still need to find a place to stay.",
    "When I was a child, my grandmother used to tell me stories every night before bed, and I still remember "
    "the one about the fox and the moon.",
    "I have been trying to learn to play the piano for a few months now. It is harder than I expected, but I "
    "practice a little every evening, and I can already play two simple songs.",
)
JA_VOICES = ("kokoro:jf_alpha", "kokoro:jm_kumo")
EN_VOICE = "piper:offline:joe-us"

#: (model, language) pairs measured; the language of the utterances each one hears.
MODELS: tuple[tuple[str, str], ...] = (
    ("offline:whisper-tiny.en", "en"),
    ("offline:whisper-base", "en"),
    ("offline:whisper-base", "ja"),
)


def utterance_specs() -> list[SampleSpec]:
    """The 24 utterances: Japanese (two Kokoro voices, alternating) and English (Piper joe)."""
    specs = [SampleSpec("ja", text, JA_VOICES[i % len(JA_VOICES)]) for i, text in enumerate(JA_TEXTS)]
    return specs + [SampleSpec("en", text, EN_VOICE) for text in EN_TEXTS]


def utterances(cache_dir: Path | None = None) -> list[Sample]:
    """The utterance set as cached WAVs (synthesised the first time; Kokoro takes about a minute)."""
    return [make_sample(spec, cache_dir, lead_s=PAD_S, tail_s=PAD_S) for spec in utterance_specs()]


def _levenshtein(ref: str, hyp: str) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate after NFKC, lower case, without punctuation, symbols or spaces."""
    ref, hyp = normalise_phrase(reference), normalise_phrase(hypothesis)
    return _levenshtein(ref, hyp) / max(1, len(ref))


def machine() -> dict[str, Any]:
    """CPU model, core count and the 1-minute load average now."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}


def thread_count() -> int:
    """Threads of this process now (Linux: /proc/self/task), 0 when unknown."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _timed(transcriber: Any, audio: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = transcriber.transcribe(audio, **kwargs)
    return result, time.perf_counter() - started


def _transcriber(model: str, language: str, window: str) -> Any:
    from assistant.speech.whisper import WhisperTranscriber

    transcriber = WhisperTranscriber(model, device="auto", language=language, window=window)
    transcriber.load()
    return transcriber


def compare_windows(model: str, language: str, samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """One row per utterance: text, CER, time and window of both windows."""
    fitted, full = _transcriber(model, language, "fitted"), _transcriber(model, language, "full")
    fitted.transcribe(samples[0].samples())  # warm-up
    full.transcribe(samples[0].samples())
    rows = []
    for sample in samples:
        audio = sample.samples()
        row: dict[str, Any] = {"model": model.removeprefix("offline:"), "language": language,
                               "duration_s": round(len(audio) / TARGET_RATE, 2), "reference": sample.text}
        for name, transcriber in (("fitted", fitted), ("full", full)):
            heard, seconds = _timed(transcriber, audio)
            row[name] = {"text": heard.text, "cer": round(cer(sample.text, heard.text), 4),
                         "ms": round(seconds * 1e3, 1), "window_frames": heard.window_frames,
                         "is_fallback": heard.is_fallback, "no_speech_prob": round(heard.no_speech_prob, 3),
                         "avg_logprob": round(heard.avg_logprob, 3),
                         "loops": transcriber.last_decoded.loops if transcriber.last_decoded else 1}
        rows.append(row)
        log.info("%s %s %.1fs fitted %.3f/%.0fms full %.3f/%.0fms", row["model"], language, row["duration_s"],
                 row["fitted"]["cer"], row["fitted"]["ms"], row["full"]["cer"], row["full"]["ms"])
    return rows


def detect_languages(samples: Sequence[Sample]) -> dict[str, Any]:
    """whisper-base with language detection on the fitted window: how often it names the right language."""
    transcriber = _transcriber("offline:whisper-base", "auto", "fitted")
    transcriber.transcribe(samples[0].samples())
    right, wrong = 0, []
    for sample in samples:
        heard = transcriber.transcribe(sample.samples())
        if heard.language == sample.language:
            right += 1
        else:
            wrong.append({"reference": sample.text, "detected": heard.language, "text": heard.text})
    return {"right": right, "total": len(samples), "wrong": wrong}


def _legacy_model(model: str) -> Any:
    """faster-whisper loaded as this project did before: two workers, all cores."""
    from faster_whisper import WhisperModel

    from assistant.models.offline import resolve_model

    return WhisperModel(resolve_model(model), device="cpu", compute_type="int8", cpu_threads=0, num_workers=2)


def _legacy_transcribe(model: Any, audio: Any, language: str) -> str:
    segments, _info = model.transcribe(audio, language=language, beam_size=1, vad_filter=False,
                                       condition_on_previous_text=False, without_timestamps=True,
                                       temperature=0.0, no_speech_threshold=None)
    return "".join(s.text for s in segments).strip()


def speed(model: str, language: str, clips: Sequence[Sample], repeat: int = 3) -> dict[str, Any]:
    """Median transcribe() time on 2-3 s clips: before (faster-whisper's transcribe), full window, fitted."""
    legacy = _legacy_model(model)
    fitted, full = _transcriber(model, language, "fitted"), _transcriber(model, language, "full")
    audio = [clip.samples() for clip in clips]
    _legacy_transcribe(legacy, audio[0], language)
    fitted.transcribe(audio[0])
    full.transcribe(audio[0])
    times: dict[str, list[float]] = {"before": [], "full": [], "fitted": []}
    steps: list[dict[str, float]] = []
    for _ in range(repeat):
        for clip in audio:  # interleaved, so a busy moment hurts all three alike
            started = time.perf_counter()
            _legacy_transcribe(legacy, clip, language)
            times["before"].append(time.perf_counter() - started)
            times["full"].append(_timed(full, clip)[1])
            times["fitted"].append(_timed(fitted, clip)[1])
            steps.append(dict(fitted.last_timings))
    step_ms = {key: round(statistics.median(s.get(key, 0.0) for s in steps) * 1e3, 1)
               for key in ("features", "encode", "detect", "generate")}
    return {"model": model.removeprefix("offline:"), "language": language, "clips": len(clips),
            "clip_s": round(statistics.median(len(a) / TARGET_RATE for a in audio), 2),
            **{f"{key}_ms": round(statistics.median(v) * 1e3, 1) for key, v in times.items()},
            "fitted_steps_ms": step_ms}


def threads_started(model: str = "offline:whisper-base") -> dict[str, int]:
    """Threads of this process before loading a model, after loading it and after one transcription."""
    import numpy as np

    from assistant.speech.whisper import WhisperTranscriber, asr_threads

    before = thread_count()
    transcriber = WhisperTranscriber(model, device="auto", language="ja")
    transcriber.load()
    loaded = thread_count()
    transcriber.transcribe(np.zeros(TARGET_RATE * 2, dtype=np.float32))
    return {"before_load": before, "after_load": loaded, "after_transcribe": thread_count(),
            "cpu_threads": transcriber.cpu_threads or asr_threads()}


def averages(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean CER and mean/median time per window, over ``rows``."""
    out: dict[str, Any] = {"utterances": len(rows)}
    for name in ("fitted", "full"):
        out[name] = {"cer": round(statistics.fmean(r[name]["cer"] for r in rows), 4),
                     "mean_ms": round(statistics.fmean(r[name]["ms"] for r in rows), 1),
                     "median_ms": round(statistics.median(r[name]["ms"] for r in rows), 1)}
    out["fallbacks"] = sum(r["fitted"]["is_fallback"] for r in rows)
    out["loops_cut"] = sum(r["fitted"]["loops"] > 1 for r in rows)
    out["cer_delta"] = round(out["fitted"]["cer"] - out["full"]["cer"], 4)
    return out


def run_asr_window_bench(quick: bool = False, cache_dir: Path | None = None) -> dict[str, Any]:
    """Every figure of this bench, as a dict (see :func:`to_markdown`)."""
    samples = utterances(cache_dir)
    if quick:
        samples = [s for s in samples if s.text in (JA_TEXTS[2], JA_TEXTS[7], EN_TEXTS[3], EN_TEXTS[8])]
    results: dict[str, Any] = {"machine": machine(), "threads": threads_started()}
    rows: list[dict[str, Any]] = []
    for model, language in MODELS:
        rows += compare_windows(model, language, [s for s in samples if s.language == language])
    results["rows"] = rows
    results["averages"] = {"all": averages(rows)}
    for model, language in MODELS:
        part = [r for r in rows if r["model"] == model.removeprefix("offline:") and r["language"] == language]
        results["averages"][f"{model.removeprefix('offline:')} ({language})"] = averages(part)
    results["language_detection"] = detect_languages(samples)
    results["speed"] = []
    for model, language in MODELS:
        clips = [s for s in samples if s.language == language and 2.0 <= s.duration_s <= 3.2]
        if clips:
            results["speed"].append(speed(model, language, clips, repeat=1 if quick else 3))
    results["load_after"] = round(os.getloadavg()[0], 2)
    return results


def _short(text: str, width: int = 38) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= width else text[: width - 1] + "…"


def to_markdown(results: dict[str, Any]) -> str:
    """The figures as Markdown: the per-utterance table, the averages, the speed of 2-3 s clips."""
    m = results["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores; load average (1 min) {m['load_1min']} at the start, "
             f"{results['load_after']} at the end.", "",
             "| model | lang | audio | reference | fitted: frames | fitted CER | fitted ms | full CER | full ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        fitted, full = r["fitted"], r["full"]
        frames = f"{fitted['window_frames']}" + (" (fallback)" if fitted["is_fallback"] else "") + (
            f" (loop x{fitted['loops']} cut)" if fitted["loops"] > 1 else "")
        lines.append(f"| {r['model']} | {r['language']} | {r['duration_s']:.1f} s | {_short(r['reference'])} | "
                     f"{frames} | {fitted['cer']:.3f} | {fitted['ms']:.0f} | {full['cer']:.3f} | {full['ms']:.0f} |")
    lines += ["", "| set | utterances | fitted CER | full CER | delta | fallbacks | loops cut | fitted mean ms | "
              "full mean ms |", "|---|---|---|---|---|---|---|---|---|"]
    for name, a in results["averages"].items():
        lines.append(f"| {name} | {a['utterances']} | {a['fitted']['cer']:.3f} | {a['full']['cer']:.3f} | "
                     f"{a['cer_delta']:+.3f} | {a['fallbacks']} | {a['loops_cut']} | {a['fitted']['mean_ms']:.0f} | "
                     f"{a['full']['mean_ms']:.0f} |")
    detection = results["language_detection"]
    lines += ["", f"Language detection (whisper-base, fitted window): {detection['right']}/{detection['total']} "
                  f"right.", "",
              "transcribe() alone on 2-3 s clips (median): before = faster-whisper's transcribe() as called before "
              "(30 s window, two workers, all cores); full / fitted = this transcriber.", "",
              "| model | lang | clips | clip | before | full window | fitted window | fitted: encode / generate |",
              "|---|---|---|---|---|---|---|---|"]
    for s in results["speed"]:
        steps = s["fitted_steps_ms"]
        lines.append(f"| {s['model']} | {s['language']} | {s['clips']} | {s['clip_s']:.1f} s | {s['before_ms']:.0f} ms"
                     f" | {s['full_ms']:.0f} ms | **{s['fitted_ms']:.0f} ms** | {steps['encode']:.0f} / "
                     f"{steps['generate']:.0f} ms |")
    t = results["threads"]
    lines += ["", f"Threads of the process: {t['before_load']} before loading whisper-base, {t['after_load']} after "
                  f"(cpu_threads={t['cpu_threads']}, one worker), {t['after_transcribe']} after a transcription."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--quick", action="store_true", help="four utterances, one repetition (a smoke run)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each utterance")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    results = run_asr_window_bench(quick=args.quick)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
