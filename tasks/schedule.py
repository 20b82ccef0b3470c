"""Periodic work: each periodic task says how often beat runs it, next to what it does; beat collects them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

# Celery task name -> interval in seconds, filled as the task modules are imported.
_INTERVALS: dict[str, float] = {}


def periodic(name: str, every: float, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """A Celery task (shared_task with `options`, results ignored) that beat runs every `every` seconds."""
    _INTERVALS[name] = every
    return shared_task(name=name, ignore_result=True, **options)


def intervals() -> dict[str, float]:
    """Every periodic task's interval, by Celery task name (only of the modules imported so far)."""
    return dict(_INTERVALS)
