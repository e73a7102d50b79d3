"""Conversation modes beyond the normal one: bedtime (calm voice, scripted lines, schedule, sleep timer)."""

from assistant.modes.bedtime import BedtimeResponder, BedtimeStage
from assistant.modes.schedule import is_inside, startup_mode

__all__ = ["BedtimeResponder", "BedtimeStage", "is_inside", "startup_mode"]
