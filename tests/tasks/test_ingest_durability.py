"""Nothing acknowledged is lost: a killed worker and a dropped Redis queue still end with every event processed once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from core.runtime import redis_client as make_redis_client
from storage.db import Database
from storage.models import Account, InboxEvent, Lead, Source
from storage.sources import create_source
from tests.bridge.conftest import Signer
from tests.services import broker_urls

REPO = Path(__file__).resolve().parents[2]
BROKER_DB = 6


def hubspot_batch(start: int, count: int) -> bytes:
    events = []
    for i in range(start, start + count):
        events.append({"eventId": i, "subscriptionId": 1, "portalId": 62515, "appId": 1,
                       "occurredAt": 1717430400000 + i, "subscriptionType": "contact.propertyChange",
                       "attemptNumber": 0, "objectId": 5000 + i, "propertyName": "email",
                       "propertyValue": f"person{i}@example.com"})
    return json.dumps(events).encode()


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--concurrency", "1"], env=env, cwd=REPO,
                            start_new_session=True)


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout}s")


@pytest.mark.slow
def test_killed_worker_and_dropped_queue_lose_nothing(service_env: dict[str, str], settings_overrides: dict[str, Any],
                                                      redis_url: str, db: Database) -> None:
    from bridge import create_app

    with db.session() as session:
        for model in (InboxEvent, Lead, Account, Source):
            session.execute(delete(model))
        source = create_source(session, kind="hubspot", name="durability")
    broker, broker_redis = broker_urls(redis_url, BROKER_DB)
    queue = make_redis_client(broker_redis)
    queue.flushdb()
    app = create_app({**settings_overrides, "broker_url": broker, "public_url": "https://bridge.example.com"})
    signer = Signer(app.test_client())

    # 1. Acknowledged with no worker running; then the queued messages are lost (as if Redis restarted empty).
    for batch in range(5):
        assert signer.hubspot(source, hubspot_batch(batch * 100, 100)).status_code == 202
    assert queue.llen("ingest") == 5
    queue.delete("ingest")

    # 2. A worker starts and is killed -9 while it works on new deliveries.
    env = {**service_env, "CELERY_BROKER_URL": broker, "LEADBRIDGE_INBOX_SWEEP_AFTER": "1"}
    worker = start_worker(env)
    for batch in range(5, 10):
        assert signer.hubspot(source, hubspot_batch(batch * 100, 100)).status_code == 202
    time.sleep(1.0)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()

    # 3. A fresh worker plus the sweeper recover everything.
    worker = start_worker(env)
    from core.settings import load_settings
    from tasks.celery_app import create_celery

    celery = create_celery(load_settings({**settings_overrides, "broker_url": broker}, env_file=None))
    started = time.monotonic()
    try:
        last_sweep = [0.0]

        def all_done() -> bool:
            if time.monotonic() - last_sweep[0] > 2:  # what beat does every 15 s, faster
                celery.send_task("tasks.maintenance.sweep_inbox")
                last_sweep[0] = time.monotonic()
            with db.session() as session:
                return session.scalar(
                    select(func.count()).select_from(InboxEvent).where(InboxEvent.status != "done")) == 0

        wait_for(all_done, timeout=120, what="processing every acknowledged event")
    finally:
        print(f"all done after {time.monotonic() - started:.1f}s; stopping worker")
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            raise
    recovery = time.monotonic() - started
    with db.session() as session:
        rows = session.scalars(select(InboxEvent)).all()
        assert len(rows) == 1000
        assert all(row.status == "done" for row in rows)
        assert all(row.attempts == 1 for row in rows), "an event was processed more than once"
        assert session.scalar(select(func.count()).select_from(Lead)) == 1000
        assert session.scalar(select(func.count(func.distinct(Lead.email))).select_from(Lead)) == 1000
    print(f"recovered 1000 events in {recovery:.1f}s")
