"""The bus: every event the pipeline emits, fanned out to observers that watch without changing it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from assistant.events import Event

log = logging.getLogger(__name__)

Observer = Callable[[Event], None]


class Bus:
    """Synchronous fan-out. Observers must return quickly (queue work for later, never block)."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Add an observer; returns a function that removes it again."""
        self._observers.append(observer)
        return lambda: self.unsubscribe(observer)

    def unsubscribe(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def publish(self, event: Event) -> None:
        for observer in tuple(self._observers):
            try:
                observer(event)
            except Exception:  # an observer's bug must never break the conversation
                log.exception("observer %r failed on %s", observer, event.type)
