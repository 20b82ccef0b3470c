"""A task sent through the broker runs in a real worker process and its result comes back."""

from __future__ import annotations

import os
from typing import Any

import psutil

from core.settings import load_settings
from tasks.celery_app import create_celery
from tasks.config import QUEUES, TASK_ROUTES


def test_ping_runs_in_a_worker_process(worker_process, settings_overrides: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    celery = create_celery(load_settings(settings_overrides, env_file=None))
    result = celery.send_task("tasks.system.ping", args=["hello"]).get(timeout=30)
    assert result["payload"] == "hello"
    assert result["pid"] != os.getpid()
    worker_pids = {p.pid for p in psutil.Process(worker_process.pid).children(recursive=True)}
    assert result["pid"] in worker_pids


def test_each_queue_is_its_own_route(settings_overrides: dict[str, Any]) -> None:
    celery = create_celery(load_settings(settings_overrides, env_file=None))
    queues = {q.name: q for q in celery.conf.task_queues}
    assert set(queues) == set(QUEUES)
    assert len({q.exchange.name for q in queues.values()}) == len(QUEUES)  # no queue receives another's messages
    assert {route["queue"] for route in TASK_ROUTES.values()} <= set(QUEUES)
