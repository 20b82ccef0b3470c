"""The JSON API does what the pages do: sources with real signed deliveries, replay through the real broker,
a test write to the sandbox CRM over HTTP, a test alert to the sandbox's Slack sink, models and the audit log."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.hubspot.client import HubSpotConnector
from core.records import utcnow
from core.runtime import redis_client as make_redis_client
from core.signatures import hubspot_v3_signature
from sandbox import DEFAULT_HUBSPOT_TOKEN, SLACK_WEBHOOK_PATH, SandboxCRM
from storage.db import Database
from storage.models import (
    AlertRule,
    AuditEntry,
    FieldMapping,
    InboxEvent,
    Lead,
    ModelVersion,
    OutboxItem,
    Source,
)
from tests.crm_ids import with_ids


def hubspot_events(start: int, count: int = 1) -> bytes:
    return json.dumps([
        {"eventId": i, "subscriptionId": 1, "portalId": 62515, "appId": 1, "occurredAt": int(time.time() * 1000) - i,
         "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 7000 + i,
         "propertyName": "email", "propertyValue": f"p{i}@example.com"} for i in range(start, start + count)
    ]).encode()


def post_signed(client: Any, webhook_url: str, secret: str, body: bytes) -> Any:
    ts = int(time.time() * 1000)
    signature = hubspot_v3_signature(secret, "POST", webhook_url, body, ts)
    path = webhook_url.split("://", 1)[1].split("/", 1)[1]
    return client.post("/" + path, data=body, content_type="application/json", buffered=True,
                       headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": str(ts)})


def queued(broker: tuple[str, str], queue: str) -> list[dict[str, Any]]:
    found = []
    for raw in make_redis_client(broker[1]).lrange(queue, 0, -1):
        message = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        found.append({"task": message["headers"]["task"], "kwargs": kwargs, **({"args": args} if args else {})})
    return found


@pytest.fixture()
def api(admin_app: Any, make_token: Callable[[str], str]) -> Any:
    """A test client whose requests carry an admin token."""
    client = admin_app.test_client()
    headers = {"Authorization": f"Bearer {make_token('admin')}"}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return client.open("/api" + path, method=method, headers=headers, **kwargs)

    call.client = client  # type: ignore[attr-defined]
    return call


def test_source_lifecycle_with_signed_deliveries(api: Any, clean_db: Database) -> None:
    created = api("POST", "/sources", json={"kind": "hubspot", "name": "hs", "org_id": "62515"})
    assert created.status_code == 201
    source = created.json
    assert source["webhook_url"].startswith("http://localhost/webhooks/hubspot/")
    assert any("Target URL" in step for step in source["setup_steps"])
    old = source["secret"]
    assert post_signed(api.client, source["webhook_url"], old, hubspot_events(1)).status_code == 202

    rotated = api("POST", f"/sources/{source['id']}/rotate-secret", json={"overlap_hours": 1})
    assert rotated.status_code == 200 and rotated.json["previous_secret_valid_until"]
    new = rotated.json["secret"]
    assert post_signed(api.client, source["webhook_url"], old, hubspot_events(2)).status_code == 202  # overlap
    assert post_signed(api.client, source["webhook_url"], new, hubspot_events(3)).status_code == 202
    assert api("POST", f"/sources/{source['id']}/rotate-secret", json={"overlap_hours": 0}).status_code == 200
    assert post_signed(api.client, source["webhook_url"], new, hubspot_events(4)).status_code == 401  # no overlap

    assert api("PATCH", f"/sources/{source['id']}", json={"enabled": False}).json["enabled"] is False
    assert post_signed(api.client, source["webhook_url"], old, hubspot_events(5)).status_code == 403
    detail = api("GET", f"/sources/{source['id']}").json
    assert detail["status_counts"] == {"pending": 3} and detail["events_24h"] == 3
    deliveries = api("GET", f"/sources/{source['id']}/deliveries", query_string={"limit": 2}).json
    assert deliveries["total"] == 3 and len(deliveries["items"]) == 2
    assert api("POST", "/sources", json={"kind": "hubspot", "name": "hs"}).status_code == 409
    bad = api("POST", "/sources", json={"kind": "salesforce", "name": "sf"})
    assert bad.status_code == 400 and "org-id" in bad.json["message"]
    typo = api("POST", "/sources", json={"kind": "events", "nme": "x"})
    assert typo.status_code == 400 and "body.name" in typo.json["message"] and "body.nme" in typo.json["message"]


def test_replay_sets_rows_pending_and_queues_them_for_ingest(api: Any, broker: tuple[str, str],
                                                             clean_db: Database) -> None:
    source = api("POST", "/sources", json={"kind": "hubspot", "name": "hs"}).json
    assert post_signed(api.client, source["webhook_url"], source["secret"], hubspot_events(10, 3)).status_code == 202
    delivered = queued(broker, "ingest")
    assert len(delivered) == 1 and len(delivered[0]["kwargs"]["ids"]) == 3
    make_redis_client(broker[1]).delete("ingest")
    with clean_db.session() as session:
        ids = sorted(session.scalars(select(InboxEvent.id)))
        # What a worker leaves behind when processing fails: the row, its attempts and the error.
        session.execute(update(InboxEvent).where(InboxEvent.id.in_(ids[:2]))
                        .values(status="failed", attempts=3, error="OperationalError: database is locked"))
    failed = api("GET", "/deliveries/inbox", query_string={"status": "failed"}).json
    assert failed["total"] == 2 and failed["items"][0]["error"].startswith("OperationalError")
    replay = api("POST", "/deliveries/inbox/replay", json={"ids": ids[:2] + [999999]})
    assert replay.status_code == 202 and replay.json == {"replayed": ids[:2], "queued": True}
    assert queued(broker, "ingest") == [{"task": "tasks.ingest.process_events", "kwargs": {"ids": ids[:2]}}]
    with clean_db.session() as session:
        rows = {r.id: (r.status, r.error) for r in session.scalars(select(InboxEvent))}
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "delivery.replay_inbox")).one()
    assert all(rows[i] == ("pending", None) for i in ids[:2])
    assert entry.before == {"status": "failed (2)"}
    assert entry.after == {"status": "pending (2)", "ids": ids[:2], "count": 2}
    assert api("POST", "/deliveries/inbox/replay", json={"ids": [999999]}).status_code == 404
    assert api("POST", "/deliveries/inbox/replay", json={"ids": []}).status_code == 400


def test_outbox_replay_queues_the_leads_for_writeback(api: Any, broker: tuple[str, str], clean_db: Database,
                                                      redis_client: Any) -> None:
    from core.keys import DIRTY_KEY, WRITTEN_KEY

    now = utcnow()
    with clean_db.session() as session:
        lead = Lead(email="b@x.io", properties={}, score=60, grade="B")
        session.add_all(with_ids(lead, hubspot="42"))
        session.flush()
        # Rows as the writeback stage records a refused batch: a summary and a dead letter per refused record.
        summary = OutboxItem(target="hubspot", kind="fields", object_type="batch", payload={"records": 1, "written": 0},
                             status="partial", attempts=1, created_at=now, updated_at=now)
        dead = OutboxItem(target="hubspot", kind="fields", object_type="contact", object_id="42", lead_id=lead.id,
                          payload={}, status="dead", attempts=1, error="VALIDATION_ERROR: Property values were not valid",
                          created_at=now, updated_at=now)
        session.add_all([summary, dead])
        session.flush()
        lead_id, dead_id, summary_id = lead.id, dead.id, summary.id
    redis_client.delete(DIRTY_KEY.format(crm="hubspot"))
    redis_client.hset(WRITTEN_KEY.format(crm="hubspot"), lead_id, "old-fingerprint")
    letters = api("GET", "/deliveries/outbox", query_string={"status": "dead"}).json["items"]
    assert [(d["id"], d["error"]) for d in letters] == [(dead_id, "VALIDATION_ERROR: Property values were not valid")]
    refused = api("POST", "/deliveries/outbox/replay", json={"ids": [summary_id]})
    assert refused.status_code == 400 and "batch summary" in refused.json["message"]
    replay = api("POST", "/deliveries/outbox/replay", json={"ids": [dead_id]})
    assert replay.status_code == 202 and replay.json == {"leads": {"hubspot": [lead_id]}, "queued": True}
    assert queued(broker, "writeback") == [{"task": "tasks.writeback.flush", "kwargs": {}, "args": ["hubspot"]}]
    assert redis_client.sismember(DIRTY_KEY.format(crm="hubspot"), lead_id)
    assert not redis_client.hexists(WRITTEN_KEY.format(crm="hubspot"), lead_id)
    with clean_db.session() as session:
        assert "replayed_at" in session.get(OutboxItem, dead_id).payload
    redis_client.delete(DIRTY_KEY.format(crm="hubspot"), WRITTEN_KEY.format(crm="hubspot"))


def test_test_write_goes_to_the_crm_with_the_mapping_in_force(
    settings_overrides: dict[str, Any], broker: tuple[str, str], make_token: Callable[[str], str],
    clean_db: Database, sandbox: SandboxCRM,
) -> None:
    from bridge import create_app

    app = create_app({**settings_overrides, "broker_url": broker[0], "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN,
                      "hubspot_base_url": sandbox.base_url})
    headers = {"Authorization": f"Bearer {make_token('admin')}"}
    client = app.test_client()
    assert HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).provision_fields().ok
    contact = sandbox.store.hs_create("contacts", {"email": "ana@acme.io", "firstname": "Ana"})
    with clean_db.session() as session:
        session.add_all(with_ids(Lead(email="ana@acme.io", properties={}, score=77, grade="B",
                                      reasons=["+ demo requested", "- free e-mail domain"], model_version="m7",
                                      scored_at=utcnow()), hubspot=contact["id"]))

    written = client.post("/api/field-mappings/test-write", json={"crm": "hubspot", "record_id": contact["id"]},
                          headers=headers)
    assert written.status_code == 200, written.json
    assert written.json["written"] is True and written.json["fields"]["leadbridge_score"] == "77"
    stored = sandbox.store.hs_get("contacts", contact["id"])["properties"]
    assert stored["leadbridge_score"] == "77" and stored["leadbridge_grade"] == "B"
    assert stored["leadbridge_reasons"] == "+ demo requested\n- free e-mail domain"

    # Map the score to a property the portal does not have: the CRM's own refusal comes back.
    mapped = client.put("/api/field-mappings/hubspot/contacts", json={"fields": {"score": "custom_score",
                                                                                 "tier": None}}, headers=headers)
    assert mapped.status_code == 200
    assert {f["output"]: f["field_name"] for f in mapped.json["fields"]}["score"] == "custom_score"
    refused = client.post("/api/field-mappings/test-write", json={"crm": "hubspot", "record_id": contact["id"]},
                          headers=headers).json
    assert refused["written"] is False and "custom_score" in refused["error"]
    assert "custom_score" in refused["fields"] and "leadbridge_tier" not in refused["fields"]
    with clean_db.session() as session:
        assert {r.output for r in session.scalars(select(FieldMapping))} == {"score", "tier"}
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["field_mapping.test_write", "field_mapping.update", "field_mapping.test_write"]
    salesforce = client.post("/api/field-mappings/test-write", json={"crm": "salesforce",
                                                                     "record_id": "00Q000000000001AAA"},
                             headers=headers)
    assert salesforce.status_code == 409 and "SALESFORCE_USERNAME" in salesforce.json["message"]
    app.extensions["leadbridge"].db.dispose()


def test_alert_rules_and_test_alert_through_the_slack_connector(api: Any, clean_db: Database,
                                                                sandbox: SandboxCRM) -> None:
    created = api("POST", "/alert-rules", json={
        "name": "Hot leads", "threshold": 80, "channel": "#hot-leads", "cooldown_minutes": 30, "grades": ["A", "B"],
        "industries": ["Software"], "min_employees": 50, "webhook_url": sandbox.base_url + SLACK_WEBHOOK_PATH})
    assert created.status_code == 201
    rule = created.json
    assert rule["grades"] == ["A", "B"] and rule["webhook_url_hint"].endswith("cret")
    assert (rule["industries"], rule["min_employees"]) == (["Software"], 50)
    with clean_db.session() as session:  # the shape the alerts stage reads (tasks.alerts.matches_routing)
        routing = session.get(AlertRule, rule["id"]).routing
    assert routing["segment"] == {"grades": ["A", "B"], "industries": ["Software"], "min_employees": 50}
    sent = api("POST", f"/alert-rules/{rule['id']}/test")
    assert sent.status_code == 200 and sent.json == {"rule_id": rule["id"], "sent": True, "error": None}
    messages = sandbox.slack.list(SLACK_WEBHOOK_PATH)
    assert len(messages) == 1 and "Hot leads (test)" in messages[0]["payload"]["text"]

    revoked = api("PATCH", f"/alert-rules/{rule['id']}",
                  json={"webhook_url": sandbox.base_url + "/services/T1/B1/invalid_token", "threshold": 85})
    assert revoked.status_code == 200 and revoked.json["threshold"] == 85
    refused = api("POST", f"/alert-rules/{rule['id']}/test").json
    assert refused["sent"] is False and "invalid_token" in refused["error"]
    no_webhook = api("PATCH", f"/alert-rules/{rule['id']}", json={"webhook_url": ""})
    assert no_webhook.json["webhook_url_hint"] is None
    assert api("POST", f"/alert-rules/{rule['id']}/test").status_code == 409  # no SLACK_WEBHOOK_URL either
    assert api("PATCH", f"/alert-rules/{rule['id']}", json={"threshold": 101}).status_code == 400
    assert api("POST", "/alert-rules", json={"name": "Hot leads", "channel": "#x"}).status_code == 409
    plain_http = api("POST", "/alert-rules", json={"name": "x", "channel": "#x", "webhook_url": "http://evil.example/"})
    assert plain_http.status_code == 400 and "https" in plain_http.json["message"]
    assert api("DELETE", f"/alert-rules/{rule['id']}").status_code == 204
    assert api("GET", f"/alert-rules/{rule['id']}").status_code == 404


def test_models_promote_and_roll_back(api: Any, clean_db: Database, tmp_path: Path, redis_client: Any) -> None:
    from core.keys import CHAMPION_KEY

    now = utcnow()
    with clean_db.session() as session:
        for i in range(3):
            path = tmp_path / f"v{i}"
            path.mkdir()
            (path / "metadata.json").write_text(json.dumps({"metrics": {"roc_auc": 0.7 + i / 100},
                                                            "baselines": {"rules": {"roc_auc": 0.6}}}))
            session.add(ModelVersion(version=f"v{i}", kind="lead", status="candidate", path=str(path),
                                     feature_hash="0" * 64, features=["x"], trained_at=now - timedelta(hours=3 - i)))
    for version in ("v0", "v1", "v2"):
        assert api("POST", f"/models/{version}/promote").json["status"] == "champion"
        assert redis_client.get(CHAMPION_KEY) == version.encode()  # what workers watch to swap models
    assert api("POST", "/models/v2/promote").status_code == 409
    assert api("POST", "/models/nope/promote").status_code == 404
    listing = api("GET", "/models").json["items"]
    assert [m["version"] for m in listing] == ["v2", "v1", "v0"]
    assert listing[0]["baselines"] == {"rules": {"roc_auc": 0.6}}
    assert api("POST", "/models/rollback", json={"kind": "lead"}).json["version"] == "v1"
    assert api("POST", "/models/rollback", json={}).json["version"] == "v0"
    assert redis_client.get(CHAMPION_KEY) == b"v0"
    assert api("POST", "/models/rollback", json={}).status_code == 409  # nothing older
    with clean_db.session() as session:
        champions = list(session.scalars(select(ModelVersion.version).where(ModelVersion.status == "champion")))
    assert champions == ["v0"]
    redis_client.delete(CHAMPION_KEY)


def test_overview_audit_users_and_tokens(api: Any, clean_db: Database) -> None:
    overview = api("GET", "/overview")
    assert overview.status_code == 200
    body = overview.json
    assert len(body["events_per_minute"]) == 60 and body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok" and set(body["queues"]) == {"ingest", "score", "writeback", "alerts",
                                                                        "learning"}
    assert "workers and beat" in body["failing"]  # no beat runs in this test
    viewer = api("POST", "/users", json={"email": "Viewer@Example.com", "password": "x" * 12, "role": "viewer"})
    assert viewer.status_code == 201 and viewer.json["email"] == "viewer@example.com"
    assert api("POST", "/users", json={"email": "viewer@example.com", "password": "y" * 12}).status_code == 409
    assert api("POST", "/users", json={"email": "short@example.com", "password": "short"}).status_code == 400
    me = api("GET", "/me").json
    assert api("DELETE", f"/users/{me['id']}").status_code == 409  # nobody removes themselves
    assert api("PATCH", f"/users/{viewer.json['id']}", json={"role": "admin"}).json["role"] == "admin"
    token = api("POST", "/tokens", json={"name": "second"})
    assert token.status_code == 201 and token.json["token"].startswith("lbt_")
    assert all("token" not in t for t in api("GET", "/tokens").json["items"])
    assert api("DELETE", f"/tokens/{token.json['id']}").status_code == 204
    audit = api("GET", "/audit", query_string={"action": "user."}).json
    assert [e["action"] for e in audit["items"]] == ["user.role", "user.add"]
    assert audit["items"][0]["before"] == {"role": "viewer"}
    with clean_db.session() as session:
        assert session.scalars(select(Source)).first() is None


def test_a_lead_carries_how_its_score_last_moved(api: Any, clean_db: Database) -> None:
    changed = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    with clean_db.session() as session:
        lead = Lead(email="bo@acme.io", properties={}, score=52, grade="B", reasons=["+ requested a demo"],
                    model_version="m1", scored_at=changed, previous_score=40, score_trend="improving",
                    score_changed_at=changed, score_change_reason="+12: requested a demo")
        session.add(lead)
        session.flush()
        lead_id = lead.id
    body = api("GET", f"/leads/{lead_id}").json["lead"]
    assert {k: body[k] for k in ("score", "previous_score", "score_trend", "score_change_reason")} == {
        "score": 52, "previous_score": 40, "score_trend": "improving", "score_change_reason": "+12: requested a demo"}
    assert body["score_changed_at"].startswith("2026-12-05T09:30:00")
    [found] = api("GET", "/leads?q=bo@acme").json["items"]
    assert found["score_trend"] == "improving"
