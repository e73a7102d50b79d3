"""Saijin: a local, voice-first desktop companion."""
