"""Stall detection: /readyz's body, /metrics, the overview and `leadbridge doctor` name a stalled part, while
/readyz stays 200 (only a failing Redis or database takes the web tier out of a load balancer)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from core.progress import record_progress
from core.records import utcnow
from core.runtime import redis_client as make_redis_client
from storage.db import Database
from storage.dead_letters import count_inbox_failure
from storage.models import DeadLetter, InboxEvent
from tests.conftest import REPO


@pytest.fixture()
def quiet(db: Database, redis_url: str) -> Iterator[Any]:
    """No inbox rows, dead letters or progress counters; yields the Redis client."""
    redis = make_redis_client(redis_url)

    def wipe() -> None:
        with db.session() as session:
            session.execute(delete(DeadLetter))
            session.execute(delete(InboxEvent))
        for pattern in ("lb:progress:*", "lb:dirty:*", "lb:paused:*"):
            keys = list(redis.scan_iter(pattern))
            if keys:
                redis.delete(*keys)

    wipe()
    yield redis
    wipe()


def old_row(db: Database, seconds: float, key: str) -> int:
    then = utcnow() - timedelta(seconds=seconds)
    with db.session() as session:
        row = InboxEvent(crm="web", object_type="person", object_id=key, event_type="identify", properties={},
                         dedupe_key=key, occurred_at=then, received_at=then, status="pending", attempts=0)
        session.add(row)
        session.flush()
        return row.id


def test_a_stalled_ingest_is_named_but_readyz_stays_up(settings_overrides: dict[str, Any], db: Database,
                                                         quiet: Any, service_env: dict[str, str]) -> None:
    from bridge import create_app

    app = create_app({**settings_overrides, "hubspot_access_token": "pat-test"})
    client = app.test_client()
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["stalled"] == []
        assert ready.json["pipeline"]["ingest"] == "ok"

        old_row(db, 312, "stalled-row")
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json["stalled"] == ["ingest"]
        assert ready.json["pipeline"]["ingest"].startswith("stalled: oldest pending row 31")
        assert ready.json["pipeline"]["ingest"].endswith("s old, 0 processed in 60 s")
        metrics = client.get("/metrics").text
        assert 'leadbridge_pipeline_stalled{part="ingest"} 1.0' in metrics
        oldest = next(line for line in metrics.splitlines() if line.startswith("leadbridge_inbox_oldest_pending_seconds"))
        assert float(oldest.split()[-1]) >= 312

        # Work is moving, just behind: reported, not called a stall.
        record_progress(quiet, "ingest", 40)
        ready = client.get("/readyz").json
        assert ready["stalled"] == [] and ready["pipeline"]["ingest"].startswith("behind: ")

        # Writeback: leads waiting and none handled, then a CRM refusing our credentials.
        quiet.sadd("lb:dirty:hubspot", 1, 2, 3)
        ready = client.get("/readyz").json
        assert ready["pipeline"]["writeback hubspot"] == "stalled: 3 leads waiting, 0 handled in 120 s"
        quiet.set("lb:paused:hubspot", "401 expired token")
        assert "paused: hubspot refused our credentials" in client.get("/readyz").json["pipeline"]["writeback hubspot"]

        # A row that gave up: a dead letter, reported as new.
        with db.session() as session:
            count_inbox_failure(session, old_row(db, 5, "dead-row"), "ValueError: boom", max_attempts=1)
        ready = client.get("/readyz").json
        assert ready["pipeline"]["dead letters"].startswith("warn: 1 new in the last hour, 1 open (1 ingest)")
        assert 'leadbridge_dead_letters{stage="ingest"} 1.0' in client.get("/metrics").text
    finally:
        app.extensions["leadbridge"].db.dispose()

    quiet.delete(*quiet.keys("lb:progress:*"))
    done = subprocess.run([sys.executable, "-m", "cli.main", "doctor"], env={**service_env, "COLUMNS": "200"},
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "stalled: oldest pending row" in done.stdout and "0 processed in 60 s" in done.stdout
    assert "1 new in the last hour" in done.stdout
