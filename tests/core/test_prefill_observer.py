"""The next request's head start (`NextRequestPrefill`): fed events, it prepares only while nothing is being
answered, once at a time."""

from __future__ import annotations

import asyncio

from assistant.events import Error, Interrupted, TurnDone, TurnDropped, UserSpeechStarted, UserTurnReady
from assistant.observers.prefill import NextRequestPrefill


async def test_the_next_request_is_prepared_when_the_user_speaks_and_nothing_is_answered() -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    async def prepare() -> None:
        calls.append(len(calls) + 1)
        await gate.wait()

    prefill = NextRequestPrefill(prepare)
    prefill(UserSpeechStarted(turn_id=1))
    prefill(UserSpeechStarted(turn_id=2))  # the first is still running: not again
    await asyncio.sleep(0)
    assert calls == [1] and prefill.is_running
    gate.set()
    await prefill.wait()
    # While a turn is answered (its reply may be written right now), the user's voice prepares nothing.
    for ended in (TurnDone(turn_id=3, persona="yuuri", spoken_text="はい。"), TurnDropped(turn_id=3),
                  Interrupted(turn_id=3), Error(message="the engine is down", turn_id=3)):
        prefill(UserTurnReady(turn_id=3, text="ねえ"))
        prefill(UserSpeechStarted(turn_id=4))
        assert prefill.started == 1
        prefill(ended)
    prefill(UserSpeechStarted(turn_id=5))
    await prefill.wait()
    assert calls == [1, 2] and prefill.started == 2


async def test_a_failing_prepare_is_only_logged() -> None:
    async def prepare() -> None:
        raise RuntimeError("the model is gone")

    prefill = NextRequestPrefill(prepare)
    prefill(UserSpeechStarted(turn_id=1))
    await prefill.wait()
    assert not prefill.is_running
