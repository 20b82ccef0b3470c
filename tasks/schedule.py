"""Periodic work: each task says how often beat runs it (`@every`), next to what it does; beat collects them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

# Celery task name -> interval in seconds, filled as the task modules are imported.
_INTERVALS: dict[str, float] = {}


def every(seconds: float) -> Callable[[F], F]:
    """Mark a task function (under its @shared_task, whose name must be module.function) to run every N seconds."""

    def mark(fn: F) -> F:
        _INTERVALS[f"{fn.__module__}.{fn.__name__}"] = seconds  # type: ignore[attr-defined]
        return fn

    return mark


def intervals() -> dict[str, float]:
    """Every marked task's interval, by Celery task name (only of the modules imported so far)."""
    return dict(_INTERVALS)
