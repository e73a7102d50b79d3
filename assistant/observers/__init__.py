"""Observers: they watch the bus (latency, the events log) and never change the conversation."""
