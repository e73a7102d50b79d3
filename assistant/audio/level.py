"""The loudness of a buffer of float samples, as one RMS level (0..1 full scale).

The VAD gates frames with it and the ASR guard skips near silence with it; lip sync takes it per window
(``lipsync.window_rms``).
"""

from __future__ import annotations

import numpy as np


def rms(audio: np.ndarray) -> float:
    """Root mean square level of float samples (0..1 full scale); 0 for no samples."""
    if audio.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
