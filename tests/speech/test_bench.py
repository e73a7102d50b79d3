"""The speech-in benchmark's parts measure what they say (the full run is for docs/benchmarks.md)."""

from __future__ import annotations

from assistant.bench.speech_in import bench_vad, to_markdown
from tests.fixtures.speech import SpeechMaker


def test_vad_cost_is_measured_per_frame(speech_maker: SpeechMaker) -> None:
    audio = speech_maker.compose(0.5, speech_maker.english("Testing one two three."), 0.5)
    result = bench_vad(audio.samples, frame_ms=20, repeat=1)
    assert result["frames"] == len(audio.samples) // 320
    assert 0 < result["us_per_frame"] < 20_000  # under a frame's own length: real time with room to spare


def test_markdown_table_holds_every_figure() -> None:
    results = {
        "vad": {"frame_ms": 20, "us_per_frame": 12.5, "frames": 500},
        "asr": {"whisper-tiny.en (en)": {"load_s": 0.4, "rtf": 0.11, "ms_per_utterance": 250.0, "utterance_s": 2.3,
                                         "device": "cpu", "compute_type": "int8"}},
        "emotion": {"prosody": {"ms_per_utterance": 18.0, "utterance_s": 2.3}},
        "speech_to_transcript": {"whisper-tiny.en (en)": {
            "plain": {"median_ms": 700.0, "vad_decision_ms": 310.0, "turns": 3, "speculative_hits": 0},
            "speculative": {"median_ms": 420.0, "vad_decision_ms": 310.0, "turns": 3, "speculative_hits": 3}}},
    }
    text = to_markdown(results)
    for expected in ("12.5 µs per frame", "| whisper-tiny.en (en) | cpu/int8 | 0.40 s | 2.3 s | 250 ms | 0.11 |",
                     "| prosody | 2.3 s | 18.0 ms |", "| 310 ms | 700 ms | 420 ms (3/3 turns hit) | 280 ms |"):
        assert expected in text
