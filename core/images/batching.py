"""Micro-batching: concurrent requests gathered into one call of a batch function.

A GPU pipeline serves eight images in one call for little more than the price of one, so requests that
arrive within `max_wait` of each other ride together, up to `max_batch`. The batch function runs on one
dedicated worker thread — off the event loop, and never two calls at once (a diffusers scheduler is
stateful and must not be shared between concurrent calls). The queue is bounded: when it is full a
request is refused at once with `ServiceUnavailable` rather than left to wait without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from core.errors import ServiceUnavailable

Request = TypeVar("Request")
Result = TypeVar("Result")


class MicroBatcher(Generic[Request, Result]):
    def __init__(
        self,
        run_batch: Callable[[Sequence[Request]], Sequence[Result]],
        *,
        max_batch: int = 8,
        max_wait: float = 0.01,
        queue_size: int = 64,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait < 0:
            raise ValueError("max_batch and queue_size must be ≥ 1, max_wait ≥ 0")
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: asyncio.Queue[tuple[Request, asyncio.Future[Result], float]] = asyncio.Queue(queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._worker: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []  # recent batch sizes, for tests and metrics
        self.on_batch: Callable[[int, float], None] | None = None  # (size, seconds) after each call

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def submit(self, request: Request) -> Result:
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="micro-batcher")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        try:
            self._queue.put_nowait((request, future, loop.time()))
        except asyncio.QueueFull:
            raise ServiceUnavailable("the image queue is full; retry shortly", retry_after=1) from None
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            # The wait for company counts from the first request's arrival: one that already queued behind
            # a running call has waited its share and rides the next call at once.
            deadline = batch[0][2] + self._max_wait
            while len(batch) < self._max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    # Anything already queued joins at once; otherwise wait for company until the deadline.
                    batch.append(self._queue.get_nowait() if not self._queue.empty() else await self._next(remaining))
                except TimeoutError:
                    break
            live = [(request, future) for request, future, _ in batch if not future.cancelled()]
            if live:
                await self._run(live)

    async def _next(self, seconds: float) -> tuple[Request, asyncio.Future[Result], float]:
        async with asyncio.timeout(seconds):
            return await self._queue.get()

    async def _run(self, batch: list[tuple[Request, asyncio.Future[Result]]]) -> None:
        began = time.perf_counter()
        requests = [request for request, _ in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, requests)
            if len(results) != len(batch):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(batch)} requests")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self.batch_sizes = [*self.batch_sizes[-99:], len(batch)]
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - began)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            _, future, _ = self._queue.get_nowait()
            if not future.done():
                future.set_exception(ServiceUnavailable("the service is shutting down"))
        self._executor.shutdown(wait=True, cancel_futures=True)
