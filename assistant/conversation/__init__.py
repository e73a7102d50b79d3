"""The conversation: who has the turn, what the assistant answers, and the session (persona, mode)."""
