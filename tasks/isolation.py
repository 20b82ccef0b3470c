"""Poison isolation: when a batch fails, split it until the items that make it fail are found.

One bad inbox row, or one lead whose values break scoring or a CRM write, must never stop the others:
the stage runs the whole batch once; if that fails for a reason that is not transient, it runs each half
again in its own transaction, and so on, until every good item went through and each failing item stands
alone. Those are counted (storage.dead_letters) and retried with backoff until they become dead letters.

Transient failures (the database or Redis away, a CRM 429/5xx, a time limit) are not the items' fault:
they propagate, and the task retries the whole batch as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import redis
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from connectors.base import TransientConnectorError

T = TypeVar("T")
R = TypeVar("R")

_TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError, InterfaceError, DisconnectionError, redis.ConnectionError, redis.TimeoutError,
    TransientConnectorError, SoftTimeLimitExceeded, TimeLimitExceeded,
)
MAX_RETRY_DELAY = 60.0


def is_transient(exc: BaseException) -> bool:
    """True when the failure says nothing about the items (a service away, a limit hit): retry them all."""
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def retry_delay(attempts: int) -> float:
    """Seconds before a failed item is tried again: 1, 2, 4, 8 ... up to a minute."""
    return min(2.0 ** max(attempts - 1, 0), MAX_RETRY_DELAY)


def isolate(items: Sequence[T], run: Callable[[Sequence[T]], R], *,
            whole_failed: BaseException | None = None) -> tuple[list[R], list[tuple[T, BaseException]]]:
    """Run `run` on `items`; on a non-transient failure, on each half, recursively.

    Returns the results of the runs that succeeded and the items that failed on their own, with the error.
    `whole_failed` says the whole batch has been run and failed already (start from its halves).
    Transient errors propagate at once. Each call of `run` must be its own transaction.
    """
    if whole_failed is None:
        try:
            return [run(items)], []
        except Exception as exc:  # noqa: BLE001 - any non-transient error may be one item's fault
            if is_transient(exc):
                raise
            whole_failed = exc
    if len(items) <= 1:
        return [], [(item, whole_failed) for item in items]
    middle = len(items) // 2
    results: list[R] = []
    failed: list[tuple[T, BaseException]] = []
    for half in (items[:middle], items[middle:]):
        done, bad = isolate(half, run)
        results.extend(done)
        failed.extend(bad)
    return results, failed
