"""Dead letters in the API and the admin: listed with counts, opened with payload (masked for viewers), retried
and discarded by admins only, each change audited, the retried work on the real broker's queues."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from core.records import utcnow
from core.runtime import redis_client as make_redis_client
from storage.db import Database
from storage.dead_letters import count_inbox_failure, count_lead_failure
from storage.models import AuditEntry, DeadLetter, InboxEvent, Lead
from tests.admin.conftest import page_csrf
from tests.crm_ids import with_ids


def make_letters(db: Database, redis: Any) -> dict[str, int]:
    """One open dead letter per stage: an inbox row, a lead whose scoring failed, a refused write."""
    now = utcnow()
    with db.session() as session:
        row = InboxEvent(crm="web", object_type="person", object_id="u-dead", event_type="identify",
                         email="dead@acme.io", properties={"traits": {"title": "CTO"}, "api_token": "s3cret"},
                         dedupe_key="dead-letter-row", occurred_at=now, received_at=now, status="pending", attempts=0)
        scored = Lead(email="score@acme.io", properties={}, created_at=now, updated_at=now)
        written = Lead(email="write@acme.io", properties={}, score=80, created_at=now, updated_at=now)
        session.add_all([row, *with_ids(scored, hubspot="9001"), *with_ids(written, hubspot="9002")])
        session.flush()
        count_inbox_failure(session, row.id, "AttributeError: 'list' object has no attribute 'get'", max_attempts=1)
        count_lead_failure(session, "score", scored.id, "KeyError: 'retired_stream'", max_attempts=1,
                           payload={"features": {"country": "Norway"}})
        count_lead_failure(session, "writeback", written.id, "INVALID_OPTION: Z was not one of the allowed options",
                           crm="hubspot", at_once=True, max_attempts=5, payload={"values": {"grade": "Z"}})
        ids = {letter.stage: letter.id for letter in session.scalars(select(DeadLetter))}
        ids.update(row=row.id, scored=scored.id, written=written.id)
    redis.sadd("lb:aside:score", ids["scored"])
    redis.hset("lb:aside:writeback:hubspot", ids["written"], "fp")
    return ids


def queued(broker: tuple[str, str], queue: str) -> list[tuple[str, list[Any], dict[str, Any]]]:
    client = make_redis_client(broker[1])
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], args, kwargs))
    return out


def test_list_open_and_retry_through_the_api(admin_app: Any, make_token: Callable[[str], str], clean_db: Database,
                                              redis_url: str, broker: tuple[str, str]) -> None:
    redis = make_redis_client(redis_url)
    ids = make_letters(clean_db, redis)
    client = admin_app.test_client()
    admin = {"Authorization": f"Bearer {make_token('admin')}"}
    viewer = {"Authorization": f"Bearer {make_token('viewer')}"}

    listed = client.get("/api/dead-letters", headers=viewer).json
    assert listed["total"] == 3 and listed["counts"]["open"] == {"ingest": 1, "score": 1, "writeback": 1}
    assert {item["stage"] for item in listed["items"]} == {"ingest", "score", "writeback"}

    detail = client.get(f"/api/dead-letters/{ids['ingest']}", headers=admin).json
    assert detail["payload"]["event"]["email"] == "dead@acme.io"
    assert detail["payload"]["event"]["properties"]["api_token"] == "[redacted]"  # secrets never shown
    assert "AttributeError" in detail["error"] and detail["attempts"] == 1
    masked = client.get(f"/api/dead-letters/{ids['ingest']}", headers=viewer).json
    assert "dead@acme.io" not in json.dumps(masked) and masked["payload"]["event"]["email"] == "***@***"
    assert client.get("/api/dead-letters/99999999", headers=admin).status_code == 404

    refused = client.post("/api/dead-letters/retry", json={"ids": [ids["ingest"]]}, headers=viewer)
    assert refused.status_code == 403
    answer = client.post("/api/dead-letters/retry", json={"ids": [ids["ingest"], ids["score"], ids["writeback"]]},
                         headers=admin)
    assert answer.status_code == 202, answer.json
    assert answer.json["queued"] is True and answer.json["inbox_rows"] == [ids["row"]]
    with clean_db.session() as session:
        row = session.get(InboxEvent, ids["row"])
        assert (row.status, row.attempts, row.error) == ("pending", 0, None)
        assert {d.status for d in session.scalars(select(DeadLetter))} == {"retried"}
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "dead_letter.retry")).one()
        assert sorted(audit.after["ids"]) == sorted([ids["ingest"], ids["score"], ids["writeback"]])
    assert not redis.sismember("lb:aside:score", ids["scored"])
    assert redis.hget("lb:aside:writeback:hubspot", ids["written"]) is None
    assert redis.sismember("lb:dirty:hubspot", ids["written"])
    assert ("tasks.ingest.process_events", [], {"ids": [ids["row"]], "retry": True}) in queued(broker, "ingest")
    assert [t for t, args, _ in queued(broker, "score") if args == [[ids["scored"]]]] == ["tasks.score.score_leads"]
    assert ("tasks.writeback.flush", ["hubspot"], {}) in queued(broker, "writeback")

    again = client.post("/api/dead-letters/retry", json={"ids": [ids["ingest"]]}, headers=admin)
    assert again.status_code == 409 and again.json["error"] == "not_open"


def test_discard_in_the_admin_pages(admin_client: Any, viewer_client: Any, clean_db: Database,
                                    redis_url: str) -> None:
    redis = make_redis_client(redis_url)
    ids = make_letters(clean_db, redis)
    page = admin_client.get("/admin/dead-letters")
    assert page.status_code == 200
    assert "KeyError: &#39;retired_stream&#39;" in page.text and "INVALID_OPTION" in page.text
    opened = admin_client.get(f"/admin/dead-letters/{ids['score']}")
    assert opened.status_code == 200 and "Norway" in opened.text and "Retry" in opened.text
    viewer_page = viewer_client.get(f"/admin/dead-letters/{ids['ingest']}")
    assert viewer_page.status_code == 200 and "dead@acme.io" not in viewer_page.text
    assert 'name="ids"' not in viewer_client.get("/admin/dead-letters").text  # viewers cannot act
    assert viewer_client.post("/admin/dead-letters/discard", data={
        "ids": [str(ids["score"])], "csrf_token": page_csrf(viewer_client)}).status_code == 403

    done = admin_client.post("/admin/dead-letters/discard", data={
        "ids": [str(ids["score"]), str(ids["writeback"])], "csrf_token": page_csrf(admin_client)})
    assert done.status_code == 302
    with clean_db.session() as session:
        states = {d.stage: d.status for d in session.scalars(select(DeadLetter))}
        assert states == {"ingest": "open", "score": "discarded", "writeback": "discarded"}
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "dead_letter.discard")).one()
    assert not redis.sismember("lb:aside:score", ids["scored"])  # the lead's next events are scored again
    assert redis.hget("lb:aside:writeback:hubspot", ids["written"]) == b"fp"  # the refused values stay aside
    remaining = admin_client.get("/admin/dead-letters?status=open").text
    assert "INVALID_OPTION" not in remaining and "AttributeError" in remaining
