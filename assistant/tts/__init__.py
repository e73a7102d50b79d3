"""Text to speech: the Synthesizer interface, its backends (Piper, VITS, Kokoro) and the speech stage."""

from assistant.tts.synthesizer import Style, Synthesizer, make_synthesizer

__all__ = ["Style", "Synthesizer", "make_synthesizer"]
