"""Garbage-collector settings for long-running processes (web workers, Celery workers)."""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000  # allocations between young collections (CPython's default is 700)


def settle_heap() -> None:
    """Freeze what start-up allocated and collect the young generation less often.

    A full collection walks every tracked object: with the app, the SDKs and a model loaded that is
    hundreds of thousands, and it stalled a request or a task for 50-100 ms every few seconds. Objects
    alive after start-up (modules, the model, the app) live as long as the process, so they are moved
    out of the collector's sight; request garbage is still collected.
    """
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
