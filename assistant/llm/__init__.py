"""The LLM side: engines, persona prompts, routing and turning streamed text into spoken sentences."""
