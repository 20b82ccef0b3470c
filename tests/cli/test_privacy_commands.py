"""`leadbridge forget`: after it, no table row and no Redis key or value anywhere holds the person's e-mail.

The person's data gets in the way it does in production: signed webhooks through the real app into the
inbox, ingest and scoring against the real database and Redis; then the real CLI runs as a process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from core.runtime import ServiceUrls
from storage.db import Database
from storage.models import AuditEntry, InboxEvent, Lead, OutboxItem, Outcome, ScoreHistory
from tasks.ingest import ingest_rows
from tests.pii import (
    BOB,
    DANA,
    World,
    hubspot_event,
    make_world,
    person_everywhere,
    redis_containing,
    rows_containing,
)
from tests.processes import REPO


@pytest.fixture()
def world(db: Database, redis_url: str, settings_overrides: dict[str, Any],
          service_urls: ServiceUrls) -> Iterator[World]:
    yield from make_world(db, redis_url, settings_overrides, service_urls)

def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def test_forget_by_email_leaves_no_trace(world: World, db: Database, service_env: dict[str, str]) -> None:
    dana_id = person_everywhere(world)
    client = world.res.redis
    # The checks below can see the data at all: before, Dana is in tables and Redis.
    assert {t for t, _ in rows_containing(db, DANA)} >= {"inbox", "leads"}
    assert redis_containing(client, DANA)

    done = run_cli(service_env, "forget", DANA, "--yes")
    assert done.returncode == 0, done.stderr
    assert f"forgot lead {dana_id}" in done.stdout

    assert rows_containing(db, DANA) == []
    assert redis_containing(client, DANA) == []
    assert redis_containing(world.broker, DANA) == []
    with db.session() as session:
        assert session.get(Lead, dana_id) is None
        for model in (ScoreHistory, Outcome, OutboxItem):
            assert session.scalar(select(func.count()).select_from(model).where(model.lead_id == dana_id)) == 0
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(
            InboxEvent.object_id.in_(["101", "u_dana"]))) == 0
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "privacy.forget")).one()
        assert entry.target == f"lead:{dana_id}" and entry.actor == "cli:forget"
        assert entry.after["events"] >= 6 and entry.after["outbox"] == 1 and entry.after["redis_keys"] >= 3
        shown = json.dumps([entry.actor, entry.action, entry.target, entry.before, entry.after]).lower()
        for personal in (DANA, "dana", "lopez", "u_dana", "initech"):
            assert personal not in shown
        # Bob, the control, is untouched.
        bob = session.scalars(select(Lead).where(Lead.email == BOB)).one()
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.object_id == "u_bob")) == 2
    assert not client.sismember("lb:dirty:hubspot", dana_id)
    assert client.hget("lb:written:hubspot", dana_id) is None
    assert client.exists(f"lb:fs:t:{bob.id}") and redis_containing(client, BOB)

    # The queued message for the purged event finds nothing left to do.
    with db.session(write=True) as session:
        assert ingest_rows(session, list(range(1, 10_000)), world.res).processed == 0
    assert rows_containing(db, DANA) == [] and redis_containing(client, DANA) == []


def test_unknown_person_is_a_clear_error(world: World, service_env: dict[str, str]) -> None:
    person_everywhere(world)
    for ref in ("nobody@nowhere.example", "999999", "hubspot:424242"):
        done = run_cli(service_env, "forget", ref, "--yes")
        assert done.returncode == 1, (ref, done.stdout, done.stderr)
        assert "no lead matches" in done.stderr and "nothing was deleted" in done.stderr
        assert "Traceback" not in done.stderr
    with world.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 2


def test_ambiguous_id_needs_a_prefix_and_spares_the_other_person(world: World, db: Database,
                                                                  service_env: dict[str, str]) -> None:
    dana_id = person_everywhere(world)
    # A HubSpot contact whose id is Dana's leadbridge id: "forget <that number>" could mean either person.
    now_ms = int(time.time() * 1000)
    world.deliver_hubspot([hubspot_event("contact.propertyChange", dana_id, now_ms - 3000, propertyName="email",
                                         propertyValue="carol.kim@umbrella.example")])
    world.process()
    done = run_cli(service_env, "forget", str(dana_id), "--yes")
    assert done.returncode == 2 and f"lead:{dana_id}" in done.stderr and f"hubspot:{dana_id}" in done.stderr
    assert "Traceback" not in done.stderr

    done = run_cli(service_env, "forget", f"lead:{dana_id}", "--yes")
    assert done.returncode == 0, done.stderr
    assert rows_containing(db, DANA) == []
    # Carol's events (object id == Dana's lead id) survive Dana's deletion.
    assert rows_containing(db, "carol.kim@umbrella.example")
    with db.session() as session:
        carol = session.scalars(select(Lead).where(Lead.hubspot_id == str(dana_id))).one()
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(
            InboxEvent.object_id == str(dana_id))) == 1
    done = run_cli(service_env, "forget", f"hubspot:{dana_id}", "--yes")
    assert done.returncode == 0, done.stderr
    with db.session() as session:
        assert session.get(Lead, carol.id) is None
