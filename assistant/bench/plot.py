"""The benchmark's waterfall: one turn's stages as horizontal bars on a time axis from the end of speech."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assistant.errors import MissingExtra

#: Bar order (top to bottom) and labels.
ROWS = (
    ("end_of_speech", "VAD decides the end"),
    ("asr_wait", "ASR worker busy (stale job)"),
    ("asr", "ASR (Whisper)"),
    ("emotion", "emotion"),
    ("prompt", "prompt + memory"),
    ("llm_first_token", "LLM first token"),
    ("first_sentence", "LLM first sentence"),
    ("tts_first_audio", "TTS first sentence"),
    ("playback_start", "output starts"),
)
COLORS = {"end_of_speech": "#9aa5ce", "asr_wait": "#c0caf5", "asr": "#7aa2f7", "emotion": "#bb9af7", "prompt": "#e0af68",
          "llm_first_token": "#ff9e64", "first_sentence": "#f7768e", "tts_first_audio": "#9ece6a",
          "playback_start": "#73daca"}


def _use_cjk_font() -> bool:
    """Add a Japanese-capable font to matplotlib's fallback list when one is installed."""
    from matplotlib import font_manager, rcParams

    names = {font.name for font in font_manager.fontManager.ttflist}
    for name in ("Noto Sans CJK JP", "Noto Serif CJK JP", "IPAexGothic", "IPAGothic", "TakaoGothic"):
        if name in names:
            rcParams["font.family"] = ["DejaVu Sans", name]
            return True
    return False


def plot_waterfall(turn: dict[str, Any], path: Path, title: str | None = None) -> Path:
    """Draw ``turn`` (one entry of the benchmark JSON's ``per_turn``) as a waterfall PNG at ``path``."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra("matplotlib", "bench", "drawing the latency waterfall (--plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_cjk_font = _use_cjk_font()
    intervals: dict[str, list[float]] = turn["intervals_ms"]
    v2v = float(turn["voice_to_voice_ms"])
    rows = [(key, label) for key, label in ROWS if key in intervals]
    labels = [label for _key, label in rows] + ["pipeline overhead (idle gaps)"]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(labels) + 1.6), dpi=110)
    for y, (key, _label) in enumerate(rows):
        start, end = intervals[key]
        shown = max(0.0, start)  # speculative ASR may start before the end of speech: draw from 0
        ax.barh(y, max(end - shown, v2v * 0.002), left=shown, color=COLORS[key], height=0.6)
        ax.text(end + v2v * 0.008, y, f"{end - start:.0f} ms", va="center", fontsize=8)
    gaps = [(start, max(end - start, v2v * 0.002)) for start, end in turn.get("gaps_ms", [])]
    y_gap = len(rows)
    ax.broken_barh(gaps, (y_gap - 0.3, 0.6), color="#db4b4b")
    ax.text(v2v * 1.008, y_gap, f"{turn['overhead_ms']:.1f} ms in all", va="center", fontsize=8)
    ax.axvline(v2v, color="black", linestyle="--", linewidth=1)
    ax.text(v2v, -0.9, f"first audio played: {v2v:.0f} ms ", fontsize=9, va="center", ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, v2v * 1.18)
    ax.set_ylim(len(labels) - 0.4, -1.4)
    ax.set_xlabel("ms after the real end of the user's speech")
    heard = turn.get("heard", "")
    if heard and not heard.isascii() and not has_cjk_font:
        heard = ""  # no font here to draw it with
    ax.set_title(title or f"median turn ({turn.get('language', '')})" + (f": \u201c{heard}\u201d" if heard else ""),
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
