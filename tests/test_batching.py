"""MicroBatcher: gathers concurrent requests, bounds its queue, passes failures to every rider."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from core.errors import ServiceUnavailable
from core.images.batching import MicroBatcher


class Doubler:
    """A batch function that records its calls and can be held at a gate (a slow GPU)."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.gate.wait(timeout=10)
        self.calls.append(list(items))
        if self.fail:
            raise RuntimeError("out of memory")
        return [item * 2 for item in items]


def test_concurrent_requests_share_a_call_and_get_their_own_results() -> None:
    async def scenario() -> None:
        work = Doubler()
        batcher = MicroBatcher(work, max_batch=4, max_wait=0.05)
        results = await asyncio.gather(*(batcher.submit(n) for n in range(10)))
        assert results == [n * 2 for n in range(10)]
        assert [len(call) for call in work.calls] == [4, 4, 2]
        assert sorted(n for call in work.calls for n in call) == list(range(10))
        await batcher.aclose()

    asyncio.run(scenario())


def test_a_lone_request_waits_at_most_the_window() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(Doubler(), max_batch=8, max_wait=0.02)
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await batcher.submit(21) == 42
        assert loop.time() - began < 0.5
        await batcher.aclose()

    asyncio.run(scenario())


def test_requests_queued_behind_a_call_ride_the_next_one_without_a_new_wait() -> None:
    async def scenario() -> None:
        work = Doubler()
        work.gate.clear()
        batcher = MicroBatcher(work, max_batch=8, max_wait=0.2)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.3)  # the first call is running (held at the gate)
        rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(1, 4)]
        await asyncio.sleep(0.25)  # longer than the window: they already waited their share
        loop = asyncio.get_running_loop()
        work.gate.set()
        began = loop.time()
        await asyncio.gather(first, *rest)
        assert loop.time() - began < 0.15
        assert [len(call) for call in work.calls] == [1, 3]
        await batcher.aclose()

    asyncio.run(scenario())


def test_a_full_queue_refuses_at_once() -> None:
    async def scenario() -> None:
        work = Doubler()
        work.gate.clear()
        batcher = MicroBatcher(work, max_batch=1, max_wait=0.0, queue_size=2)
        running = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # taken by the worker: the queue is empty again
        queued = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(ServiceUnavailable) as caught:
            await batcher.submit(3)
        assert caught.value.retry_after >= 1
        work.gate.set()
        assert await asyncio.gather(running, *queued) == [0, 2, 4]
        await batcher.aclose()

    asyncio.run(scenario())


def test_a_failed_call_fails_its_riders_and_the_next_call_runs() -> None:
    async def scenario() -> None:
        work = Doubler()
        work.fail = True
        batcher = MicroBatcher(work, max_batch=4, max_wait=0.05)
        outcomes = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
        assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
        work.fail = False
        assert await batcher.submit(5) == 10
        await batcher.aclose()

    asyncio.run(scenario())
