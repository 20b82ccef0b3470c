"""Fixtures for the learning tests: a clean slate in the shared test database and a small stored world."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete

from core.records import Event
from storage.db import Database
from storage.inbox import store_events
from storage.models import (
    Account,
    InboxEvent,
    Lead,
    ModelEvent,
    ModelVersion,
    OnlineSnapshot,
    OutboxItem,
    Outcome,
    OutcomeDefinition,
    PrequentialScore,
    ScoreHistory,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def wipe_world(db: Database, redis_client: Any) -> None:
    """Delete leads, events, outcomes, scores, models and the learner's state; clear the model keys."""
    with db.session(write=True) as session:
        for model in (PrequentialScore, OnlineSnapshot, ModelEvent, Outcome, ScoreHistory, OutboxItem, ModelVersion,
                      InboxEvent, Lead, Account, OutcomeDefinition):
            session.execute(delete(model))
    redis_client.delete("lb:model:champion", "lb:model:online")


@pytest.fixture()
def clean(db: Database, redis_client: Any) -> Iterator[Database]:
    """The test database without leads, events, outcomes, scores or models; the champion key cleared."""
    wipe_world(db, redis_client)
    yield db
    wipe_world(db, redis_client)


def web_event(user: str, event_type: str, at: datetime, key: str, props: dict[str, Any] | None = None,
              email: str | None = None) -> Event:
    """A behavioural event as the webhook parser produces it (crm web, object person, id = userId)."""
    return Event(source="site", crm="web", object_type="person", object_id=user, event_type=event_type,
                 occurred_at=at, received_at=at, properties=props or {}, dedupe_key=key, email=email)


def world_events(leads: int = 240, seed: int = 11) -> tuple[list[Event], dict[str, tuple[bool, datetime]]]:
    """Leads whose hidden intent drives pricing views, demos and conversion; outcomes by user id."""
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    outcomes: dict[str, tuple[bool, datetime]] = {}
    for i in range(leads):
        user = f"u{i:04d}"
        start = T0 + int(rng.integers(0, 60)) * DAY
        intent = float(rng.random())
        domain = "gmail.com" if rng.random() < 0.3 else f"corp{i % 40}.com"
        title = str(rng.choice(["CEO", "VP Sales", "Engineer", "Student", "Marketing Manager"]))
        events.append(web_event(user, "identify", start, f"{user}:id", {"traits": {"title": title, "email":
                                f"{user}@{domain}"}}, email=f"{user}@{domain}"))
        for k in range(int(rng.poisson(2 + 12 * intent))):
            at = start + timedelta(hours=int(rng.integers(1, 24 * 20)))
            url = "https://acme.io/pricing" if rng.random() < intent else "https://acme.io/blog/x"
            events.append(web_event(user, "page_view", at, f"{user}:pv{k}", {"url": url}))
        if rng.random() < intent * 0.6:
            events.append(web_event(user, "demo_request", start + 15 * DAY, f"{user}:demo"))
        won = rng.random() < 1 / (1 + np.exp(-(-3 + 6 * intent)))
        if won or rng.random() < 0.5:  # half the non-converters get an explicit lost outcome
            outcomes[user] = (bool(won), start + 22 * DAY)
    return events, outcomes


def store_world(db: Database, events: list[Event], outcomes: dict[str, tuple[bool, datetime]]) -> dict[str, int]:
    """Ingest the events like the pipeline does (inbox -> leads) and record their outcomes; user -> lead id."""
    from sqlalchemy import select

    from tasks.ingest import ingest_rows

    with db.session(write=True) as session:
        ids = store_events(session, events, None)
    with db.session(write=True) as session:
        ingest_rows(session, ids, None)
    with db.session(write=True) as session:
        leads = {xid: lid for lid, xid in session.execute(select(Lead.id, Lead.external_id))}
        for user, (won, at) in outcomes.items():
            session.add(Outcome(lead_id=leads[user], won=won, occurred_at=at, source="test"))
    return leads
