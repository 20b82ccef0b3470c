"""Logs of real processes: one JSON object per line off a terminal, extra fields kept, per-task lines at DEBUG."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from core.settings import load_settings
from tests.cli.output import Lines, per_task_lines
from tests.services import broker_urls
from tests.processes import start_cli, stop, wait_for

BROKER_DB = 3  # this test's worker consumes from its own broker database


@pytest.mark.slow
def test_worker_logs_json_with_extra_fields_and_no_per_task_lines(
        service_env: dict[str, str], settings_overrides: dict[str, Any], redis_url: str) -> None:
    from core.runtime import redis_client
    from tasks.celery_app import create_celery

    broker_url, broker_redis = broker_urls(redis_url, BROKER_DB)
    redis_client(broker_redis).flushdb()
    env = {**service_env, "CELERY_BROKER_URL": broker_url, "LEADBRIDGE_LOG_LEVEL": "INFO",
           "LEADBRIDGE_LOG_FORMAT": "auto"}  # auto, and stderr is a pipe: JSON
    celery = create_celery(load_settings({**settings_overrides, "broker_url": broker_url}, env_file=None))
    worker = start_cli(["worker", "--queues", "learning", "--concurrency", "1"], env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert worker.stdout is not None and worker.stderr is not None
    out, err = Lines(worker.stdout), Lines(worker.stderr)
    out.start()
    err.start()
    try:
        wait_for(lambda: celery.control.ping(timeout=0.5), 60, "the worker answering a ping")
        for n in range(5):
            result = celery.send_task("tasks.system.ping", args=[f"p{n}"], queue="learning")
            assert result.get(timeout=30)["payload"] == f"p{n}"
    finally:
        stop(worker)
        out.join(timeout=10)
        err.join(timeout=10)
    records = err.records()  # every stderr line parses as JSON
    started = [r for r in records if r["message"] == "worker.watchdog.started"]
    assert started, err.lines
    (line,) = started
    # The extra= fields of the record, beside the standard ones.
    assert line["queues"] == "learning" and line["stall_after"] > 0
    assert line["level"] == "INFO" and line["logger"] == "tasks.watchdog" and "timestamp" in line and line["pid"]
    assert any(r["message"].endswith(" ready.") for r in records)  # Celery's own records go the same way
    assert per_task_lines(err.lines + out.lines) == []
    assert not any("[queues]" in line or "celery@" in line for line in out.lines)  # no banner
