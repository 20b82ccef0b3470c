"""Retry policy shared by the connectors: transient failures only, exponential backoff with jitter, Retry-After honoured."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_base

from connectors.base import TransientConnectorError

T = TypeVar("T")


class wait_retry_after_or_backoff(wait_base):
    """Wait what the vendor asked for (Retry-After, plus a little jitter), else exponential backoff with full jitter."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, jitter: float = 0.1,
                 rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        """Seconds to sleep before the next attempt."""
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and retry_after >= 0:
            # Never earlier than asked; spread concurrent workers a little so they don't return in lock-step.
            return float(retry_after) * (1.0 + self.rng.uniform(0.0, self.jitter))
        ceiling = min(self.maximum, self.initial * 2 ** (retry_state.attempt_number - 1))
        return self.rng.uniform(ceiling / 2, ceiling)


def call_with_retries(fn: Callable[[], T], *, attempts: int = 5, max_elapsed: float = 120.0, initial: float = 0.5,
                      maximum: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn`, retrying TransientConnectorError; auth and permanent errors propagate at once."""
    retrying = Retrying(
        retry=retry_if_exception_type(TransientConnectorError),
        wait=wait_retry_after_or_backoff(initial, maximum),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_elapsed),
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a connector retries transient failures itself, and how long a call waits for a rate-limit token."""

    attempts: int = 5
    max_elapsed: float = 120.0
    rate_wait: float = 60.0  # seconds; beyond it a call counts as transient (the caller's retry decides)


DEFAULT_RETRY = RetryPolicy()
# A worker task tries once and leaves the waiting to Celery's retry, so a worker is not held by one vendor.
WORKER_RETRY = RetryPolicy(attempts=1, rate_wait=10.0)
BACKFILL_RETRY = RetryPolicy(attempts=8, max_elapsed=600.0)  # a backfill can wait out a 429 or a brief outage
SETUP_RETRY = RetryPolicy(attempts=3)
TRIAL_WRITE_RETRY = RetryPolicy(attempts=1, max_elapsed=10.0)  # an admin is waiting for the answer
