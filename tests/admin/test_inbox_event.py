"""One inbox row opened like a dead letter, in the API and the admin: payload (secrets scrubbed, personal data
masked for viewers), error, attempts and processing history; retry and discard by admins only, audited, the
retried row on the real broker's ingest queue."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from core.records import utcnow
from storage.db import Database
from storage.dead_letters import count_inbox_failure
from storage.models import AuditEntry, DeadLetter, InboxEvent, Lead
from tests.admin.conftest import page_csrf
from tests.admin.test_dead_letters import queued
from tests.crm_ids import with_ids

PROPERTIES = {"firstname": "Ana", "lastname": "Lopez", "phone": "+34 600 000 000", "company": "Acme",
              "notes": "write to ana.lopez@acme.io", "api_token": "s3cret-token"}


def make_rows(db: Database) -> dict[str, int]:
    """A dead row (failed twice, with its dead letter), a row still pending after a failure, a processed row."""
    now = utcnow()
    with db.session() as session:
        lead = Lead(email="ana.lopez@acme.io", properties={}, score=72, created_at=now, updated_at=now)
        rows = {
            name: InboxEvent(crm="hubspot", object_type="contact", object_id=object_id, event_type="property_change",
                             email="ana.lopez@acme.io", properties=dict(PROPERTIES), dedupe_key=f"inbox-{name}",
                             occurred_at=now, received_at=now, status="pending", attempts=0)
            for name, object_id in (("dead", "7001"), ("stuck", "7002"), ("done", "7001"))
        }
        session.add_all([*with_ids(lead, hubspot="7001"), *rows.values()])
        session.flush()
        for _ in range(2):
            count_inbox_failure(session, rows["dead"].id, "KeyError: 'ana.lopez@acme.io'", max_attempts=2)
        count_inbox_failure(session, rows["stuck"].id, "TimeoutError: enrichment", max_attempts=5)
        rows["done"].status, rows["done"].attempts, rows["done"].processed_at = "done", 1, now
        letter = session.scalars(select(DeadLetter).where(DeadLetter.inbox_id == rows["dead"].id)).one()
        return {**{name: row.id for name, row in rows.items()}, "letter": letter.id, "lead": lead.id}


def test_open_retry_and_discard_through_the_api(admin_app: Any, make_token: Callable[[str], str],
                                                clean_db: Database, broker: tuple[str, str]) -> None:
    ids = make_rows(clean_db)
    client = admin_app.test_client()
    admin = {"Authorization": f"Bearer {make_token('admin')}"}
    viewer = {"Authorization": f"Bearer {make_token('viewer')}"}

    detail = client.get(f"/api/deliveries/inbox/{ids['dead']}", headers=admin)
    assert detail.status_code == 200, detail.json
    body = detail.json
    assert (body["status"], body["attempts"], body["lead_id"]) == ("dead", 2, ids["lead"])
    assert "KeyError" in body["error"] and body["dead_letter_ids"] == [ids["letter"]]
    assert body["payload"]["email"] == "ana.lopez@acme.io" and body["payload"]["properties"]["firstname"] == "Ana"
    assert body["payload"]["properties"]["api_token"] == "[redacted]"  # secrets never shown, not even to admins
    assert [h["what"] for h in body["history"]][:2] == [
        "received", f"set aside as dead letter {ids['letter']} after 2 failed attempt(s)"]

    masked = client.get(f"/api/deliveries/inbox/{ids['dead']}", headers=viewer).json
    text = json.dumps(masked)
    for personal in ("ana.lopez@acme.io", "Ana", "Lopez", "+34 600"):
        assert personal not in text, personal
    assert masked["payload"]["properties"]["company"] == "Acme" and masked["payload"]["email"] == "***@***"
    assert client.get("/api/deliveries/inbox/99999999", headers=admin).status_code == 404

    assert client.post(f"/api/deliveries/inbox/{ids['dead']}/retry", headers=viewer).status_code == 403
    retried = client.post(f"/api/deliveries/inbox/{ids['dead']}/retry", headers=admin)
    assert retried.status_code == 202 and retried.json == {"id": ids["dead"], "status": "pending", "queued": True}
    assert ("tasks.ingest.process_events", [], {"ids": [ids["dead"]]}) in queued(broker, "ingest")
    with clean_db.session() as session:
        row = session.get(InboxEvent, ids["dead"])
        assert (row.status, row.attempts, row.error) == ("pending", 0, None)
        letter = session.get(DeadLetter, ids["letter"])
        assert letter.status == "retried" and letter.resolved_by.endswith("(api token)")
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "inbox.retry")).one()
        assert entry.target == f"inbox:{ids['dead']}" and entry.before == {"status": "dead", "attempts": 2}

    refused = client.post(f"/api/deliveries/inbox/{ids['done']}/discard", headers=admin)
    assert refused.status_code == 409 and refused.json["error"] == "not_discardable"  # it has had its effect
    discarded = client.post(f"/api/deliveries/inbox/{ids['stuck']}/discard", headers=admin)
    assert discarded.status_code == 200 and discarded.json == {"id": ids["stuck"], "status": "discarded"}
    history = client.get(f"/api/deliveries/inbox/{ids['stuck']}", headers=admin).json["history"]
    assert history[-1]["what"].startswith("discarded") and history[-1]["by"].endswith("(api token)")
    listed = client.get("/api/deliveries/inbox?status=discarded", headers=viewer).json
    assert [item["id"] for item in listed["items"]] == [ids["stuck"]]


def test_inbox_row_page_for_admins_and_viewers(admin_client: Any, viewer_client: Any, clean_db: Database) -> None:
    ids = make_rows(clean_db)
    listing = admin_client.get("/admin/deliveries?tab=inbox").text
    for name in ("dead", "stuck", "done"):
        assert f'href="/admin/deliveries/inbox/{ids[name]}"' in listing

    page = admin_client.get(f"/admin/deliveries/inbox/{ids['stuck']}")
    assert page.status_code == 200
    assert "TimeoutError: enrichment" in page.text and "ana.lopez@acme.io" in page.text
    assert f'href="/admin/leads/{ids["lead"]}"' in page.text and "attempt 2 due" in page.text
    assert "s3cret-token" not in page.text and 'id="inbox-discard"' in page.text

    seen = viewer_client.get(f"/admin/deliveries/inbox/{ids['dead']}")
    assert seen.status_code == 200 and "KeyError" in seen.text
    for personal in ("ana.lopez@acme.io", "Lopez", "+34 600"):
        assert personal not in seen.text, personal
    assert 'id="inbox-retry"' not in seen.text and 'id="inbox-discard"' not in seen.text
    assert viewer_client.post(f"/admin/deliveries/inbox/{ids['dead']}/discard",
                              data={"csrf_token": page_csrf(viewer_client)}).status_code == 403
    assert admin_client.get("/admin/deliveries/inbox/99999999").status_code == 404

    done = admin_client.post(f"/admin/deliveries/inbox/{ids['dead']}/discard",
                             data={"csrf_token": page_csrf(admin_client)})
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/admin/deliveries/inbox/{ids['dead']}")
    after = admin_client.get(done.headers["Location"]).text
    assert "discarded: will not be processed" in after and admin_client.user.email in after
    assert 'id="inbox-discard"' not in after  # a discarded row can still be retried, not discarded again
    with clean_db.session() as session:
        assert session.get(InboxEvent, ids["dead"]).status == "discarded"
        assert session.get(DeadLetter, ids["letter"]).status == "discarded"
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "inbox.discard")).one()

    again = admin_client.post(f"/admin/deliveries/inbox/{ids['done']}/retry",
                              data={"csrf_token": page_csrf(admin_client)})
    assert again.status_code == 302
    with clean_db.session() as session:
        assert session.get(InboxEvent, ids["done"]).status == "pending"
