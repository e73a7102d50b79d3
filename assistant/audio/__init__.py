"""Audio in (WAV reading, resampling, sources, the VAD) and out (playback sinks, the output stage, lip sync)."""
