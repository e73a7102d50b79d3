"""Thread budgets per stage and the core arbiter: urgent work makes background work wait at its safe points."""

from __future__ import annotations

import threading

import pytest

from assistant.threads import CorePriority, cpu_threads


@pytest.mark.parametrize(("cores", "expected"), [
    (1, {"asr": 1, "llm": 1, "tts": 1, "emotion": 1}),
    (2, {"asr": 2, "llm": 2, "tts": 2, "emotion": 1}),
    (4, {"asr": 4, "llm": 3, "tts": 1, "emotion": 1}),
    (16, {"asr": 8, "llm": 12, "tts": 4, "emotion": 1}),
])
def test_budgets_follow_the_cores(monkeypatch: pytest.MonkeyPatch, cores: int, expected: dict[str, int]) -> None:
    monkeypatch.setenv("SAIJIN_CPUS", str(cores))
    monkeypatch.delenv("SAIJIN_THREADS", raising=False)
    assert {stage: cpu_threads(stage) for stage in expected} == expected


def test_background_work_waits_until_urgent_work_ends() -> None:
    cores = CorePriority(enabled=True, max_wait_s=60)
    order: list[str] = []
    holding, waiting = threading.Event(), threading.Event()

    def background() -> None:
        holding.wait()
        waiting.set()
        cores.wait_while_urgent()
        order.append("background went on")

    worker = threading.Thread(target=background)
    worker.start()
    with cores.urgent():
        holding.set()
        waiting.wait(10)
        worker.join(0.3)  # it must still be waiting (any busy machine keeps this true)
        order.append("urgent done")
    worker.join(10)
    assert order == ["urgent done", "background went on"]


def test_a_cancelled_wait_ends_without_the_urgent_work_ending() -> None:
    cores = CorePriority(enabled=True, max_wait_s=60)
    cancelled = threading.Event()
    done = threading.Event()

    def background() -> None:
        cores.wait_while_urgent(cancelled.is_set)
        done.set()

    with cores.urgent():
        worker = threading.Thread(target=background)
        worker.start()
        cancelled.set()
        assert done.wait(10)
        assert cores.is_urgent
    worker.join(10)


def test_nested_holders_release_only_when_the_last_leaves() -> None:
    cores = CorePriority(enabled=True)
    with cores.urgent():
        with cores.urgent():
            assert cores.is_urgent
        assert cores.is_urgent
    assert not cores.is_urgent and cores.wait_while_urgent() == 0.0


def test_switched_off_nothing_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAIJIN_CORE_PRIORITY", "off")
    cores = CorePriority()
    with cores.urgent():
        assert not cores.is_urgent
        assert cores.wait_while_urgent() == 0.0
