"""Durable memory: turns, rolling summaries and facts in SQLite, and recall of what matters for the next reply."""
