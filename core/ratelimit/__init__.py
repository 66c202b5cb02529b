"""Per-client rate limiting: one token-bucket arithmetic, one limiter protocol, several stores.

- `bucket.py`   the arithmetic (`TokenBucket.take`), pure and clock-injected
- `limiter.py`  the `RateLimiter` protocol the service calls
- `memory.py`   the default store: this process's memory, bounded
- `dynamodb.py` a table shared by every instance (boto3, imported only when a table is configured)
- `redis.py`    Redis shared by every instance, one Lua script call per take (through `core/sharedstore.py`)
- `authfailures.py` the budget of wrong bearer tokens per client, on a limiter of any of these stores

A new store is a class with `async acquire(key) -> RateDecision` and `health()` (for `/health`) that
applies `TokenBucket.take` to state kept wherever it likes; `core/wiring.py` chooses it from the settings.
"""

from core.ratelimit.bucket import BucketState, RateDecision, TokenBucket
from core.ratelimit.limiter import RateLimiter
from core.ratelimit.memory import MemoryRateLimiter

__all__ = ["BucketState", "MemoryRateLimiter", "RateDecision", "RateLimiter", "TokenBucket"]
