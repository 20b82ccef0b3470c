"""System tasks: the round-trip probe and the beat heartbeat."""

from __future__ import annotations

import os
import socket
import time

from celery import shared_task

from core.keys import HEARTBEAT_KEY
from tasks.resources import resources
from tasks.schedule import periodic


@shared_task(name="tasks.system.ping", ignore_result=False)
def ping(payload: str = "ping") -> dict[str, object]:
    """Echo `payload` with the worker's host and pid, proving a worker really ran it."""
    return {"payload": payload, "host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}


@periodic("tasks.system.heartbeat", every=30.0)
def heartbeat() -> None:
    """Record that beat and a worker are alive (read by `doctor` and the admin overview)."""
    resources().redis.set(HEARTBEAT_KEY, str(time.time()), ex=300)
