"""A token bucket per CRM account, shared by every worker through Redis (one atomic Lua script).

HubSpot counts requests over a rolling window (190 per 10 s for Pro/Enterprise private apps). A plain
bucket of capacity L refilled at L/W per second can let through 2L in one window (a full bucket plus a
window's refill), so the bucket here holds `burst` tokens and refills at (L - burst)/W per second: in any
window of W seconds at most burst + (L - burst) = L requests pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from core.keys import RATELIMIT_KEY

# KEYS[1] bucket key. ARGV: capacity, refill per second, tokens requested, key TTL in ms.
# Returns {allowed (0/1), milliseconds to wait until the request would fit}. The Redis server's clock is used
# so that workers on different machines agree on time.
_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate / 1000)
  ts = now
end
local allowed = 0
local wait = 0
if tokens >= want then
  tokens = tokens - want
  allowed = 1
else
  wait = math.ceil((want - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, wait}
"""


class RateLimitTimeout(TimeoutError):
    """The bucket did not free a token within the caller's timeout."""


class RedisTokenBucket:
    """Shared request budget for one CRM account (e.g. one HubSpot portal token)."""

    def __init__(self, client: redis.Redis, key: str, *, limit: int = 190, window_seconds: float = 10.0,
                 burst: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be >= 1 and window_seconds > 0")
        self.client = client
        self.key = RATELIMIT_KEY.format(bucket=key)
        self.limit = limit
        self.window = window_seconds
        self.burst = max(1, min(limit - 1, burst if burst is not None else max(1, limit // 10))) if limit > 1 else 1
        self.rate = (limit - self.burst) / window_seconds if limit > 1 else limit / window_seconds
        self.sleep = sleep
        self._script = client.register_script(_LUA)
        self._ttl_ms = int(max(window_seconds * 2, 60) * 1000)

    @classmethod
    def for_hubspot(cls, client: redis.Redis, account: str, limit: int = 190, window_seconds: float = 10.0,
                    **kwargs: object) -> RedisTokenBucket:
        """Bucket for one HubSpot account (portal id or a token fingerprint); 190 req / 10 s by default."""
        return cls(client, f"hubspot:{account}", limit=limit, window_seconds=window_seconds, **kwargs)  # type: ignore[arg-type]

    def try_acquire(self, tokens: int = 1) -> float:
        """Take tokens if available; returns 0.0 on success, else the seconds to wait before trying again."""
        allowed, wait_ms = self._script(keys=[self.key], args=[self.burst, self.rate, tokens, self._ttl_ms])
        return 0.0 if int(allowed) == 1 else int(wait_ms) / 1000.0

    def acquire(self, tokens: int = 1, timeout: float | None = 60.0) -> float:
        """Block until tokens are taken; returns the seconds spent waiting. Raises RateLimitTimeout."""
        start = time.monotonic()
        while True:
            wait = self.try_acquire(tokens)
            if wait == 0.0:
                return time.monotonic() - start
            if timeout is not None and time.monotonic() - start + wait > timeout:
                raise RateLimitTimeout(f"rate limit {self.key} had no free slot within {timeout:.1f}s")
            self.sleep(wait)

    def reset(self) -> None:
        """Forget the bucket (it starts full again)."""
        self.client.delete(self.key)
