"""Personal data in tests: a person whose data sits everywhere leadbridge keeps state, and scans that find it
(every database table, every Redis key and value, Celery messages included)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from storage.db import Database
from storage.inbox import pending_ids
from storage.models import AuditEntry, Base, FieldMapping, InboxEvent, Lead, OutboxItem, Outcome
from storage.sources import SourceView, create_source
from tasks.ingest import ingest_rows
from tasks.resources import Resources
from tasks.score import score_and_store
from tests.bridge.conftest import Signer
from tests.crm_ids import crm_id
from tests.services import broker_urls, wipe_pipeline

_BODY = re.compile(rb'"body":\s*"([A-Za-z0-9+/=]+)"')


def rows_containing(db: Database, needle: str) -> list[tuple[str, str]]:
    """(table, row text) for every row of every table whose values contain `needle` (case-insensitive)."""
    needle = needle.lower()
    found = []
    with db.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                text = repr(tuple(row)).lower()
                if needle in text:
                    found.append((table.name, text[:300]))
    return found


def redis_containing(client: Any, needle: str) -> list[str]:
    """Keys of the client's Redis database whose name or value (any type) contains `needle`."""
    raw = needle.lower().encode()
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            parts = [client.get(key) or b""]
        elif kind == "hash":
            parts = [b for kv in client.hgetall(key).items() for b in kv]
        elif kind == "set":
            parts = list(client.smembers(key))
        elif kind == "zset":
            parts = list(client.zrange(key, 0, -1))
        elif kind == "list":
            parts = list(client.lrange(key, 0, -1))
        elif kind == "stream":
            parts = [b for _, fields in client.xrange(key) for kv in fields.items() for b in kv]
        else:
            parts = []
        parts = [p if isinstance(p, bytes) else str(p).encode() for p in parts]
        # Celery messages (queues, kombu's unacked hash) carry their arguments base64-encoded: look inside too.
        parts += [base64.b64decode(m) for p in parts for m in _BODY.findall(p)]
        blob = b"\0".join([key, *parts]).lower()
        if raw in blob:
            found.append(key.decode(errors="replace"))
    return found


# ---- a world with a person in it -------------------------------------------------------------------

BROKER_DB = 8
DANA = "dana.lopez@initech.com"
BOB = "bob.berg@globex.com"
ERIN = "erin.park@hooli.example"  # a third person, for the tests that need one
PORTAL = 62515


@dataclass
class World:
    """The app, its sources, and the in-process pipeline pieces a test drives."""

    signer: Signer
    hubspot: SourceView
    events: SourceView
    res: Resources
    db: Database
    broker: Any

    def deliver_events(self, batch: list[dict[str, Any]]) -> None:
        response = self.signer.events(self.events, json.dumps({"batch": batch}).encode())
        assert response.status_code == 202, response.get_data(as_text=True)

    def deliver_hubspot(self, events: list[dict[str, Any]]) -> None:
        response = self.signer.hubspot(self.hubspot, json.dumps(events).encode())
        assert response.status_code == 202, response.get_data(as_text=True)

    def process(self) -> set[int]:
        """Ingest every pending row (as a worker would) and score the leads it touched."""
        with self.db.session() as session:
            ids = pending_ids(session, list(session.scalars(select(InboxEvent.id))))
        with self.db.session(write=True) as session:
            result = ingest_rows(session, ids, self.res)
        if result.leads:
            score_and_store(self.res, sorted(result.leads), "event")
        return result.leads


def make_world(db: Database, redis_url: str, settings_overrides: dict[str, Any],
               service_urls: ServiceUrls) -> Iterator[World]:
    """Body of a `world` fixture: clean tables and keys, sources, the app on a private broker database."""
    from bridge import create_app

    client = make_redis_client(redis_url)
    wipe_pipeline(db, client, AuditEntry, FieldMapping)
    broker, broker_redis = broker_urls(redis_url, BROKER_DB)
    broker_client = make_redis_client(broker_redis)
    broker_client.flushdb()
    with db.session() as session:
        hubspot = create_source(session, kind="hubspot", name="privacy-hubspot", org_id=str(PORTAL))
        events = create_source(session, kind="events", name="privacy-web")
    app = create_app({**settings_overrides, "broker_url": broker, "public_url": "https://bridge.example.com"})
    res = Resources(load_settings(settings_overrides, env_file=None), service_urls, db, client)
    yield World(Signer(app.test_client()), hubspot, events, res, db, broker_client)
    app.extensions["leadbridge"].db.dispose()
    wipe_pipeline(db, client, AuditEntry, FieldMapping)


def segment(kind: str, user: str, email: str, **extra: Any) -> dict[str, Any]:
    event = {"type": kind, "userId": user, "messageId": uuid.uuid4().hex, "context": {"traits": {"email": email}},
             "timestamp": datetime.now(UTC).isoformat()}
    event.update(extra)
    return event


def hubspot_event(subscription: str, object_id: int, at_ms: int, **extra: Any) -> dict[str, Any]:
    return {"eventId": at_ms % 100000, "subscriptionId": 1, "portalId": PORTAL, "appId": 1, "occurredAt": at_ms,
            "subscriptionType": subscription, "attemptNumber": 0, "objectId": object_id,
            "changeSource": "CRM_UI", **extra}


def person_everywhere(world: World) -> int:
    """Dana's data in every place leadbridge keeps some; Bob's too, as the control. Returns Dana's lead id."""
    now_ms = int(time.time() * 1000)
    world.deliver_events([
        segment("identify", "u_dana", DANA, traits={"email": DANA, "firstName": "Dana", "lastName": "Lopez",
                                                      "title": "VP Marketing", "company": "Initech"}),
        segment("page", "u_dana", DANA, properties={"url": "https://example.com/pricing"}),
        segment("track", "u_dana", DANA, event="Demo Requested", properties={}),
        segment("identify", "u_bob", BOB, traits={"email": BOB, "firstName": "Bob", "title": "CTO"}),
        segment("page", "u_bob", BOB, properties={"url": "https://example.com/docs/api"}),
    ])
    world.deliver_hubspot([
        hubspot_event("contact.propertyChange", 101, now_ms - 5000, propertyName="email", propertyValue=DANA),
        hubspot_event("contact.propertyChange", 101, now_ms - 4000, propertyName="lastname", propertyValue="Lopez"),
    ])
    world.process()
    with world.db.session() as session:
        dana = session.scalars(select(Lead).where(Lead.email == DANA)).one()
        assert crm_id(session, dana.id, "hubspot") == "101"
        assert dana.external_id == "u_dana" and dana.score is not None
        session.add(Outcome(lead_id=dana.id, won=True, occurred_at=datetime.now(UTC), source="test", detail="won"))
        session.add(OutboxItem(target="hubspot", kind="fields", object_type="contact", object_id="101",
                               lead_id=dana.id, payload={"score": dana.score}, status="pending"))
        dana_id = dana.id
    client = world.res.redis
    client.sadd("lb:dirty:hubspot", dana_id)  # a writeback waiting for the next flush
    client.hset("lb:written:hubspot", dana_id, "f00d")
    client.set(f"lb:enriched:hubspot:{DANA}", 1)
    client.set(f"lb:alert:cool:1:{dana_id}", 1)
    # One more event that no worker has processed yet: queued work, in the inbox and as a broker message.
    world.deliver_events([segment("page", "u_dana", DANA, properties={"url": "https://example.com/pricing/plans"})])
    with world.db.session() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.status == "pending"))
    assert world.broker.llen("ingest") >= 1
    return dana_id
