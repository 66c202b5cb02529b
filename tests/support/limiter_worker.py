"""One process of the "many instances on one bucket" test: threads, each its own event loop and SharedStore.

`python -m tests.support.limiter_worker URL KEY CAPACITY THREADS TAKES` prints `READY`, waits for a line on
stdin (so that every process starts together), runs THREADS × TAKES takes on KEY, and prints the totals as
JSON. The bucket refills one token in about eleven days: whatever is admitted came out of the capacity.
"""

from __future__ import annotations

import asyncio
import json
import sys

from core.ratelimit.bucket import TokenBucket
from core.ratelimit.redis import RedisRateLimiter
from core.sharedstore import SharedStore
from tests.support.released_together import release_threads_together

SLOW_REFILL = 1e-6  # tokens per second


async def _takes(url: str, key: str, bucket: TokenBucket, takes: int) -> tuple[int, int]:
    # A generous time limit: two CPU cores run all the processes, and a slow call must not turn into a
    # fail-open admission that would hide a counting error.
    store = SharedStore.from_url(url, timeout=10.0, max_connections=4)
    limiter = RedisRateLimiter(store, bucket, fail_open=False)
    admitted = 0
    for _ in range(takes):
        admitted += (await limiter.acquire(key)).allowed
    await store.aclose()
    return admitted, limiter.store_failures


def main(url: str, key: str, capacity: int, threads: int, takes: int) -> None:
    bucket = TokenBucket(capacity=capacity, refill_per_second=SLOW_REFILL)
    results = release_threads_together(threads, lambda: asyncio.run(_takes(url, key, bucket, takes)))
    print(json.dumps({"admitted": sum(r[0] for r in results), "failures": sum(r[1] for r in results)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
