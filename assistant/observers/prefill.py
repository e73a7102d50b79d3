"""A head start for the next request: while the user speaks, the engine reads what the request will start with.

The embedded engine keeps its evaluated prompt between turns, but each turn still begins with a few tokens of
the chat template (the end of the last reply, the opening of the user's message) before the user's words:
on a small CPU about a quarter of a second. When the user starts to speak and no reply is under way, this
observer asks for them to be read now, while the cores are idle (`assistant.llm.embedded.EmbeddedEngine.prefill`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from assistant.events import (
    Error,
    Event,
    Interrupted,
    TurnDone,
    TurnDropped,
    UserSpeechStarted,
    UserTurnReady,
)

log = logging.getLogger(__name__)


class NextRequestPrefill:
    """Runs ``prepare()`` in the background when the user starts to speak and no turn is being answered
    (once at a time; a prefill still running is not started again)."""

    def __init__(self, prepare: Callable[[], Awaitable[None]]) -> None:
        self._prepare = prepare
        self._answering: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        #: How many prefills were started (for tests and the log).
        self.started = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, UserTurnReady):
            self._answering.add(event.turn_id)
        elif isinstance(event, TurnDone | TurnDropped | Interrupted) or (
                isinstance(event, Error) and event.ends_turn and event.turn_id is not None):
            self._answering.discard(event.turn_id)
        elif isinstance(event, UserSpeechStarted) and not self._answering and not self.is_running:
            self.started += 1
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        try:
            await self._prepare()
        except Exception:  # a head start only: the request reads whatever is missing itself
            log.debug("prefill of the next request failed", exc_info=True)

    async def wait(self) -> None:
        """Until a running prefill has finished."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
