"""The latency observer: per-turn stage timings and voice to voice (real end of speech -> first audio)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistant.events import (
    Audio,
    Event,
    Interrupted,
    Latency,
    PlaybackStarted,
    StageTiming,
    TurnDone,
    UserSpeechEnded,
    UserTranscript,
    UserTurnReady,
    now,
)

log = logging.getLogger(__name__)


@dataclass
class _TurnTimes:
    speech_end: float | None = None
    decided_at: float | None = None
    ready_at: float | None = None
    first_audio_at: float | None = None
    first_play_at: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    is_reported: bool = False


class LatencyObserver:
    """Collects timings from the bus and publishes one `latency` event per turn when its first audio plays
    (or when a silent reply is done). Keeps every report in ``reports`` and appends them to ``log_path``."""

    def __init__(self, publish: Callable[[Event], None], log_path: Path | None = None, keep: int = 1000) -> None:
        self._publish = publish
        self._turns: dict[int, _TurnTimes] = {}
        self._log_path = log_path
        self._keep = keep
        self.reports: list[Latency] = []

    def __call__(self, event: Event) -> None:
        turn_id = event.turn
        if turn_id is None or isinstance(event, Latency):
            return
        times = self._turns.setdefault(turn_id, _TurnTimes())
        if isinstance(event, UserSpeechEnded):
            times.speech_end = event.speech_end
            times.decided_at = event.decided_at
            times.stages["end_of_speech"] = max(0.0, (event.decided_at - event.speech_end) * 1000.0)
        elif isinstance(event, UserTranscript) and times.speech_end is not None:
            # End of speech -> the words known: what speech recognition adds to the wait, end of turn included.
            times.stages.setdefault("transcript", max(0.0, (now() - times.speech_end) * 1000.0))
        elif isinstance(event, UserTurnReady):
            times.ready_at = times.ready_at or now()
        elif isinstance(event, StageTiming):
            # The first timing of a stage counts (tts reports once per sentence; the first is on the path).
            key = "tts_first_audio" if event.stage == "tts" else event.stage
            times.stages.setdefault(key, event.ms)
        elif isinstance(event, Audio) and times.first_audio_at is None:
            times.first_audio_at = now()
        elif isinstance(event, PlaybackStarted) and times.first_play_at is None:
            times.first_play_at = event.at
            if times.first_audio_at is not None:
                times.stages["playback_start"] = max(0.0, (event.at - times.first_audio_at) * 1000.0)
            self._report(turn_id, times)
        elif isinstance(event, TurnDone):
            self._report(turn_id, times)
        elif isinstance(event, Interrupted):
            self._turns.pop(turn_id, None)
        if len(self._turns) > 64:
            for old in sorted(self._turns)[:-64]:
                del self._turns[old]

    def _report(self, turn_id: int, times: _TurnTimes) -> None:
        if times.is_reported:
            return
        times.is_reported = True
        v2v = None
        if times.speech_end is not None and times.first_play_at is not None:
            v2v = round((times.first_play_at - times.speech_end) * 1000.0, 1)
        report = Latency(turn_id=turn_id, stages_ms={k: round(v, 1) for k, v in times.stages.items()},
                         voice_to_voice_ms=v2v)
        self.reports.append(report)
        del self.reports[: -self._keep]
        self._publish(report)
        if self._log_path is not None:
            try:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                with self._log_path.open("a", encoding="utf-8") as handle:
                    handle.write(report.to_json() + "\n")
            except OSError as exc:
                log.warning("cannot append to %s: %s", self._log_path, exc)
