"""Sandbox machinery around the records: fault injection, vendor rate limits and the request log."""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

# lost_response: the request is handled and committed, then the connection drops before the answer (a client
# cannot tell it from "drop", where nothing happened: only an idempotent retry is safe).
FAULT_KINDS = ("status", "slow", "drop", "lost_response")
S = TypeVar("S")  # what a rate limit keeps per key


class FaultSpecError(ValueError):
    """An admin request described a fault the sandbox cannot inject."""


@dataclass
class Fault:
    """Make matching requests fail: an error status, a delay, or a dropped connection."""

    route: str  # regular expression searched in the request path
    kind: str = "status"
    status: int = 500
    method: str | None = None
    retry_after: float | None = None  # seconds, sent as Retry-After (rounded up to whole seconds)
    delay: float = 0.0  # for kind=slow: seconds to sleep before answering normally
    count: int | None = None  # how many requests to affect (None: no limit)
    seconds: float | None = None  # for how long after creation (None: no limit)
    body: Any = None  # optional override of the vendor-shaped error body
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: float = field(default_factory=time.time)
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise FaultSpecError(f"kind must be one of {', '.join(FAULT_KINDS)}, not {self.kind!r}")
        try:
            self._regex = re.compile(self.route)
        except re.error as exc:
            raise FaultSpecError(f"route is not a valid regular expression: {exc}") from None
        if self.kind == "status" and not 400 <= int(self.status) <= 599:
            raise FaultSpecError("status must be between 400 and 599")
        if self.count is not None and int(self.count) < 1:
            raise FaultSpecError("count must be at least 1")
        if self.kind == "slow" and not 0 < float(self.delay) <= 120:
            raise FaultSpecError("delay must be between 0 and 120 seconds for kind=slow")

    def expired(self, now: float) -> bool:
        """True when the fault has used its count or outlived its seconds."""
        return (self.count is not None and self.hits >= self.count) or (
            self.seconds is not None and now - self.created > self.seconds)

    def matches(self, method: str, path: str) -> bool:
        """True when this fault applies to the request."""
        return (self.method is None or self.method.upper() == method.upper()) and bool(self._regex.search(path))

    def describe(self) -> dict[str, Any]:
        """Return the fault as JSON-able data."""
        out = asdict(self)
        out["remaining"] = None if self.count is None else max(0, self.count - self.hits)
        return out


class FaultInjector:
    """Holds active faults; `take` consumes one hit of the first matching fault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, spec: Mapping[str, Any]) -> Fault:
        """Register a fault from an admin JSON spec; raises FaultSpecError."""
        allowed = {"route", "kind", "status", "method", "retry_after", "delay", "count", "seconds", "body"}
        unknown = set(spec) - allowed
        if unknown:
            raise FaultSpecError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if not isinstance(spec.get("route"), str) or not spec["route"]:
            raise FaultSpecError("route (a regular expression matched against the path) is required")
        try:
            fault = Fault(**spec)
        except TypeError as exc:
            raise FaultSpecError(str(exc)) from None
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """Return the fault to apply to this request (consuming one hit), or None."""
        now = time.time()
        with self._lock:
            self._faults = [f for f in self._faults if not f.expired(now)]
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        """Return the active faults."""
        now = time.time()
        with self._lock:
            return [f.describe() for f in self._faults if not f.expired(now)]

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()


class _PerKeyLimit(Generic[S]):
    """A vendor rate limit's state per key (a token, a channel), shared by request threads."""

    def __init__(self) -> None:
        self._state: dict[str, S] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every key's state: each starts again with its full allowance."""
        with self._lock:
            self._state.clear()


class SlidingWindowLimiter(_PerKeyLimit[deque[float]]):
    """A rolling-window request counter per key (HubSpot counts per token over a rolling 10 s)."""

    def __init__(self, max_requests: int, window_seconds: float) -> None:
        super().__init__()
        self.max_requests = max_requests
        self.window = window_seconds

    def hit(self, key: str, now: float | None = None) -> tuple[bool, int, float]:
        """Count one request; returns (allowed, remaining, seconds until a slot frees up)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._state.setdefault(key, deque())
            while q and now - q[0] >= self.window:
                q.popleft()
            if len(q) >= self.max_requests:
                return False, 0, max(0.0, self.window - (now - q[0]))
            q.append(now)
            return True, self.max_requests - len(q), 0.0


class TokenBucket(_PerKeyLimit[tuple[float, float]]):
    """A token bucket per key: `rate` tokens a second up to `burst` (Slack's ~1 msg/s with short bursts)."""

    def __init__(self, rate: float, burst: int) -> None:
        super().__init__()
        self.rate = rate
        self.burst = burst

    def take(self, key: str, now: float | None = None) -> tuple[bool, float]:
        """Take one token; returns (allowed, seconds until the next token)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return True, 0.0
            self._state[key] = (tokens, now)
            return False, (1.0 - tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    """Format a Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the sandbox answered."""

    seq: int
    t: float  # time.time() when the request arrived
    t_end: float
    method: str
    path: str
    family: str  # hubspot | salesforce | slack | admin | other
    status: int
    fault: str | None
    retry_after: str | None
    token: str | None  # a short fingerprint of the credential, never the credential


class RequestLog:
    """A bounded log of answered requests, readable through the admin API."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._items: deque[RequestRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, **kwargs: Any) -> None:
        """Append one record."""
        with self._lock:
            self._seq += 1
            self._items.append(RequestRecord(seq=self._seq, **kwargs))

    def query(self, since: float = 0.0, path: str | None = None, family: str | None = None) -> list[dict[str, Any]]:
        """Return records after `since`, optionally filtered by a path regex and family."""
        regex = re.compile(path) if path else None
        with self._lock:
            items = list(self._items)
        return [asdict(r) for r in items if r.t >= since and (family is None or r.family == family)
                and (regex is None or regex.search(r.path))]

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._items.clear()
