"""Speech understanding: the Transcriber and EmotionTagger interfaces, their backends, the Understand stage."""

from assistant.speech.emotion import EmotionTagger, make_emotion_tagger
from assistant.speech.transcriber import HallucinationGuard, Transcriber, Transcript, make_transcriber

__all__ = ["EmotionTagger", "HallucinationGuard", "Transcriber", "Transcript", "make_emotion_tagger",
           "make_transcriber"]
