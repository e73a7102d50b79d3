"""Speech understanding: the Transcriber and EmotionTagger interfaces, their backends, the Understand stage."""
