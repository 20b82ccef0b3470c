"""Drill (a): kill -9 a worker while it works through a batch; a new worker (and the sweeper) finish the job."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.drills.conftest import Stack, report, wait

BROKER_DB = 9


@pytest.mark.slow
def test_worker_killed_mid_batch(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(BROKER_DB)
    stack.start(workers=1)
    people = stack.add_people()
    victim = stack.workers[0]

    def busy() -> bool:
        # Kill while tasks are in hand: something is reserved or running, not between batches.
        return bool(stack.broker.hlen("unacked"))

    def kill_midway(batch: int) -> None:
        if batch == 5:
            wait(busy, 10, "the worker holding unacknowledged tasks")
            stack.kill_worker(victim)

    accepted = stack.send_events(batches=12, batch_size=25, between=kill_midway)
    assert victim not in stack.workers
    lost = stack.broker.hlen("unacked")  # tasks the dead worker held: Redis gives them back only after an hour
    started = time.monotonic()
    stack.start_worker()
    recovery = stack.converge(90, "recovery after kill -9")
    counts = stack.assert_exactly_once()
    report("a kill -9 worker", recovery=recovery, held_by_dead_worker=lost, people=people, events_sent=accepted,
           **counts)
    assert time.monotonic() - started < 120
