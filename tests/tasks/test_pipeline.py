"""End to end over real processes: webhook -> inbox -> worker (ingest, score, writeback) -> sandbox CRM field.

Real `leadbridge web` and `leadbridge worker` processes, the real hubspot-api-client writing to the
sandbox CRM over HTTP, and the sandbox sending its own signed webhooks back (our echo).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from standardwebhooks import Webhook

from core.runtime import redis_client as make_redis_client
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from storage.db import Database
from storage.models import AlertRule, InboxEvent, Lead, ScoreHistory
from storage.sources import create_source
from tests.crm_ids import crm_id
from tests.processes import free_port, http_ok, start_cli, stop, wait_for
from tests.services import broker_urls, wipe_pipeline

BROKER_DB = 7


@pytest.fixture()
def stack(service_env: dict[str, str], redis_url: str, db: Database,
          hubspot_sandbox: SandboxCRM) -> Iterator[dict[str, Any]]:
    """web + worker processes wired to the test database, a private broker database and the sandbox."""
    wipe_pipeline(db, make_redis_client(redis_url))
    broker, broker_redis = broker_urls(redis_url, BROKER_DB)
    make_redis_client(broker_redis).flushdb()
    port = free_port()
    env = {**service_env, "CELERY_BROKER_URL": broker, "HUBSPOT_ACCESS_TOKEN": DEFAULT_HUBSPOT_TOKEN,
           "HUBSPOT_BASE_URL": hubspot_sandbox.base_url,
           "SLACK_WEBHOOK_URL": hubspot_sandbox.base_url + "/services/T000/B000/sandbox",
           "LEADBRIDGE_PORT": str(port), "LEADBRIDGE_WEB_WORKERS": "1", "LEADBRIDGE_ALERT_CHANNEL_INTERVAL": "0"}
    web = start_cli(["web"], env)
    worker = start_cli(["worker", "--concurrency", "2"], env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(base + "/readyz"), 60, "web ready")
        yield {"base": base, "env": env}
    finally:
        stop(web)
        stop(worker)


def post_events(base: str, path: str, secret: str, batch: list[dict[str, Any]]) -> requests.Response:
    body = json.dumps({"batch": batch})
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, now, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
               "Content-Type": "application/json"}
    return requests.post(base + path, data=body, headers=headers, timeout=10)


def track(email: str, name: str, **props: Any) -> dict[str, Any]:
    return {"type": "track", "userId": email, "event": name, "properties": props, "context": {"traits": {"email": email}},
            "timestamp": datetime.now(UTC).isoformat(), "messageId": uuid.uuid4().hex}


def page(email: str, url: str) -> dict[str, Any]:
    return {"type": "page", "userId": email, "properties": {"url": url, "title": url},
            "context": {"traits": {"email": email}}, "timestamp": datetime.now(UTC).isoformat(),
            "messageId": uuid.uuid4().hex}


@pytest.mark.slow
def test_event_to_crm_field_without_a_loop(stack: dict[str, Any], sandbox: SandboxCRM, db: Database) -> None:
    base = stack["base"]
    contact = sandbox.store.hs_create("contacts", {"email": "dana@initech.com", "firstname": "Dana",
                                                   "jobtitle": "VP Engineering"})
    contact_id = contact["id"]
    with db.session() as session:
        events_source = create_source(session, kind="events", name="site")
        hubspot_source = create_source(session, kind="hubspot", name="hubspot-app", org_id="62515")
        session.add(AlertRule(name="hot", threshold=1, channel="#sales", cooldown_minutes=60, routing={}, enabled=True))
    # The sandbox sends its own changes (including our writes) back to leadbridge, signed like HubSpot.
    requests.post(sandbox.base_url + "/_sandbox/webhooks", timeout=5, json={
        "kind": "hubspot", "url": base + f"/webhooks/hubspot/{hubspot_source.slug}",
        "client_secret": hubspot_source.secret, "flush_seconds": 0.05}).raise_for_status()

    started = time.time()
    batch = [page("dana@initech.com", "https://initech.example/pricing"),
             page("dana@initech.com", "https://initech.example/pricing/enterprise"),
             track("dana@initech.com", "Demo Requested")]
    response = post_events(base, events_source.webhook_path(), events_source.secret or "", batch)
    assert response.status_code == 202, response.text

    def written() -> list[dict[str, Any]]:
        """Every write of a leadbridge_* property on the contact (one entry per property written)."""
        return requests.get(sandbox.base_url + "/_sandbox/writes", timeout=5, params={
            "prefix": "leadbridge_", "since": started, "object_id": contact_id}).json()["writes"]

    wait_for(lambda: any(w["property"] == "leadbridge_score" for w in written()), 60,
             "the score written to the HubSpot contact")
    stored = sandbox.store.hs_get("contacts", contact_id)["properties"]
    assert 0 <= int(stored["leadbridge_score"]) <= 100
    assert stored["leadbridge_reasons"]
    with db.session() as session:
        lead = session.scalars(select(Lead).where(Lead.email == "dana@initech.com")).one()
        assert crm_id(session, lead.id, "hubspot") == contact_id
        assert lead.score == int(stored["leadbridge_score"])
        assert session.scalar(select(func.count()).select_from(ScoreHistory).where(ScoreHistory.lead_id == lead.id)) >= 1

    # The sandbox echoes our write back as contact.propertyChange webhooks; they must be dropped, not re-scored.
    def echoes_ignored() -> bool:
        with db.session() as session:
            return bool(session.scalar(select(func.count()).select_from(InboxEvent).where(
                InboxEvent.status == "ignored", InboxEvent.object_id == contact_id)))

    wait_for(echoes_ignored, 30, "our own write coming back and being ignored")
    time.sleep(2.0)
    writes = written()
    history_before = _history_count(db)
    time.sleep(3.0)
    assert written() == writes, "an echo caused another write: score-write-score loop"
    assert _history_count(db) == history_before
    scores = [w["value"] for w in writes if w["property"] == "leadbridge_score"]
    assert scores and all(a != b for a, b in zip(scores, scores[1:])), "the same value was written twice in a row"

    # The hot-lead rule fired once and Slack (the sandbox sink) received a Block Kit message.
    def slack_messages() -> list[dict[str, Any]]:
        return requests.get(sandbox.base_url + "/_sandbox/slack/messages", timeout=5).json()["messages"]

    wait_for(lambda: slack_messages(), 30, "the hot-lead alert")
    assert len(slack_messages()) == 1
    assert "blocks" in json.dumps(slack_messages()[0])


def _history_count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ScoreHistory)) or 0)
