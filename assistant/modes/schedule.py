"""The bedtime schedule: whether a wall-clock time falls in a daily window (23:00-06:00 crosses midnight),
and which mode a start-up begins in (the mode survives a restart inside its window)."""

from __future__ import annotations

from datetime import datetime, timedelta

from assistant.config.schema import BedtimeConfig, ScheduleWindow
from assistant.events import MODES
from assistant.state import AppState

#: Without a schedule, a saved bedtime mode older than this is not restored (it was last night's).
RESTORE_WITHIN = timedelta(hours=12)
#: A saved time this far in the future is a clock that jumped; it is not trusted.
_CLOCK_SLACK = timedelta(minutes=1)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def is_inside(window: ScheduleWindow, at: datetime) -> bool:
    """True when ``at`` (local wall clock) is inside the window; start is inside, end is not.

    A window whose start equals its end is empty.
    """
    start, end, minute = _minutes(window.start), _minutes(window.end), at.hour * 60 + at.minute
    if start == end:
        return False
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def last_boundary(hhmm: str, at: datetime) -> datetime:
    """The latest moment at or before ``at`` when the wall clock read ``hhmm`` (today or yesterday)."""
    minutes = _minutes(hhmm)
    moment = at.replace(hour=minutes // 60, minute=minutes % 60, second=0, microsecond=0)
    return moment if moment <= at else moment - timedelta(days=1)


def startup_mode(cfg: BedtimeConfig, state: AppState | None, now: datetime, requested: str | None = None) -> str:
    """The mode to start in.

    - ``requested`` (``--mode``) wins;
    - inside the schedule window: the mode chosen since the window began (by voice, the page or the schedule),
      else bedtime;
    - outside it: bedtime only when it was chosen by hand since the window last ended (this evening) and less
      than 12 hours ago; else normal;
    - without a schedule: a saved bedtime set less than 12 hours ago; else normal.
    """
    if requested:
        return requested
    saved_mode = state.mode if state is not None and state.mode in MODES else None
    saved_at: datetime | None = None
    if saved_mode is not None and state is not None and state.mode_set_at is not None:
        try:
            saved_at = datetime.fromtimestamp(state.mode_set_at, tz=now.tzinfo)
        except (OverflowError, OSError, ValueError):
            saved_at = None
        if saved_at is not None and saved_at > now + _CLOCK_SLACK:
            saved_at = None
    is_recent = saved_at is not None and now - saved_at < RESTORE_WITHIN
    window = cfg.schedule
    if window is None:
        return "bedtime" if saved_mode == "bedtime" and is_recent else "normal"
    if is_inside(window, now):
        if saved_mode is not None and saved_at is not None and saved_at >= last_boundary(window.start, now):
            return saved_mode
        return "bedtime"
    if saved_mode == "bedtime" and is_recent and saved_at is not None and saved_at >= last_boundary(window.end, now):
        return "bedtime"
    return "normal"
