"""Drill (b): Redis (broker, online features, writeback state) restarts under load; the sweeper recovers.

The stack gets a Redis of its own (an embedded server on its own socket, in both suite modes), so the
drill never stops the suite's Redis or a shared server. It is stopped the way an operator restarts it
(SHUTDOWN SAVE), kept down for a few seconds while webhooks keep arriving, and started on the same socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.redis_server import EmbeddedRedis
from tests.drills.conftest import Stack, report

DOWN_SECONDS = 4.0


@pytest.mark.slow
def test_redis_restart(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "drill-redis")
    server.start()
    stacks: list[Stack] = []
    try:
        stack = make_stack(1, redis_url=server.url)
        stacks.append(stack)
        stack.start(workers=1)
        people = stack.add_people()
        stack.send_events(batches=3, batch_size=25)
        down: dict[str, float] = {}

        def restart_midway(batch: int) -> None:
            if batch == 1:
                server.stop()
                down["at"] = time.monotonic()
            if "at" in down and "up" not in down and time.monotonic() - down["at"] >= DOWN_SECONDS:
                server.start()
                down["up"] = time.monotonic()

        # Webhooks keep arriving while Redis is down: the inbox takes them, the hand-off fails and is logged.
        accepted = stack.send_events(batches=9, batch_size=25, pause=DOWN_SECONDS / 6, between=restart_midway)
        if "up" not in down:
            time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down["at"])))
            server.start()
            down["up"] = time.monotonic()
        # Celery can reconnect to a restarted Redis and yet never consume again (celery/celery#8091, #10205).
        # The worker's watchdog then exits it with code 75 and the stack restarts it, as `leadbridge run`
        # does; the restart must lose nothing and repeat nothing.
        stack.converge(60, "recovery after the Redis restart")
        recovery = time.monotonic() - down["up"]  # from the moment Redis answered again
        counts = stack.assert_exactly_once()
        report("b Redis restart", recovery_since_restart=recovery, redis_down=down["up"] - down["at"],
               people=people, events_sent=accepted, watchdog_restarts=stack.watchdog_restarts, **counts)
        assert recovery < 100
    finally:
        for stack_ in stacks:
            stack_.stop()  # before the server goes, so no worker is left reconnecting to nothing
        server.stop()
