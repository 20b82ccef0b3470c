"""The worker watchdog: a worker that stops consuming a queue with messages in it exits with code 75, losing nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from tasks.watchdog import WATCHDOG_EXIT_CODE, StallDetector, Watchdog
from tests.services import broker_urls
from tests.processes import start_cli, stop, wait_for

BROKER_DB = 12


def test_waiting_messages_with_a_free_slot_and_nothing_received_is_a_stall() -> None:
    detector = StallDetector(stall_after=30, capacity=2, last_received=0.0)
    assert not detector.stalled(100.0, backlog=5, busy=0)  # starts the clock
    assert not detector.stalled(129.0, backlog=5, busy=1)
    assert detector.stalled(130.0, backlog=5, busy=1)


def test_no_stall_while_the_queue_is_empty_every_slot_is_busy_or_messages_arrive() -> None:
    detector = StallDetector(stall_after=30, capacity=2, last_received=0.0)
    assert not detector.stalled(100.0, backlog=0, busy=0)
    assert not detector.stalled(200.0, backlog=0, busy=0)  # idle for long is fine
    assert not detector.stalled(210.0, backlog=9, busy=2)  # every slot taken: not receiving is right
    assert not detector.stalled(260.0, backlog=9, busy=2)
    assert not detector.stalled(270.0, backlog=9, busy=1)  # a slot frees up: the clock starts now
    detector.received(290.0)
    assert not detector.stalled(310.0, backlog=9, busy=1)  # 20 s since the last message
    assert detector.stalled(320.0, backlog=9, busy=1)


def test_an_unreachable_broker_is_not_a_stall() -> None:
    calls: list[int] = []

    def broker_down() -> int:
        calls.append(1)
        if len(calls) > 3:
            watchdog.halt.set()
        raise ConnectionError("broker away")

    stalls: list[int] = []
    watchdog = Watchdog(StallDetector(0.0, 2, last_received=0.0), broker_down, lambda: 0, stalls.append,
                        interval=0.01)
    watchdog.run()
    assert len(calls) > 3 and not stalls


@pytest.mark.slow
def test_a_worker_that_stops_consuming_exits_75_and_its_messages_wait_for_the_next(
        service_env: dict[str, str], settings_overrides: dict[str, Any], redis_url: str) -> None:
    """A consumer cancelled under the worker stands in for celery/celery#8091's silent one."""
    from tasks.celery_app import create_celery

    broker_url, broker_redis = broker_urls(redis_url, BROKER_DB)
    broker = make_redis_client(broker_redis)
    broker.flushdb()
    env = {**service_env, "CELERY_BROKER_URL": broker_url, "LEADBRIDGE_WORKER_WATCHDOG_SECONDS": "2"}
    celery = create_celery(load_settings({**settings_overrides, "broker_url": broker_url}, env_file=None))
    worker = start_cli(["worker", "--queues", "ingest,learning", "--concurrency", "1"], env)
    replacement = None
    try:
        wait_for(lambda: celery.control.ping(timeout=0.5), 60, "the worker answering a ping")
        celery.control.cancel_consumer("ingest", reply=True, timeout=5)
        celery.send_task("tasks.system.ping", queue="ingest")  # harmless, and nobody takes it now
        started = time.monotonic()
        wait_for(lambda: worker.poll() is not None, 60, "the stalled worker exiting")
        assert worker.returncode == WATCHDOG_EXIT_CODE
        assert time.monotonic() - started < 30
        assert broker.llen("ingest") == 1  # the message waits: nothing was taken and dropped

        replacement = start_cli(["worker", "--queues", "ingest,learning", "--concurrency", "1"], env)
        wait_for(lambda: broker.llen("ingest") == 0, 60, "the restarted worker taking the message")
        time.sleep(3)  # longer than the stall limit: a worker that consumes is left alone
        assert replacement.poll() is None
    finally:
        stop(worker)
        if replacement is not None:
            stop(replacement)
        broker.flushdb()
