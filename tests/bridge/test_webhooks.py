"""Webhook endpoints: verification, storage in the inbox, hand-off to the ingest queue, and every rejection."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import InboxEvent
from storage.sources import rotate_secret, set_enabled
from tests.bridge.conftest import Signer, fixture_bytes

HUBSPOT_BATCH = "hubspot/batch_documented.json"


def inbox_count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(InboxEvent)) or 0)


def test_hubspot_batch_is_stored_and_handed_off(signed: Signer, make_source, db: Database, queued) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    body = fixture_bytes(HUBSPOT_BATCH)
    response = signed.hubspot(source, body)
    assert response.status_code == 202, response.get_json()
    summary = response.get_json()
    events_in_body = len(json.loads(body))
    assert summary["accepted"] + len(summary["ignored"]) + len(summary["invalid"]) == events_in_body
    assert summary["accepted"] > 0 and summary["invalid"] == []
    with db.session() as session:
        rows = session.scalars(select(InboxEvent).order_by(InboxEvent.id)).all()
        assert len(rows) == summary["accepted"]
        assert {r.crm for r in rows} == {"hubspot"}
        assert all(r.status == "pending" and r.source_id == source.id for r in rows)
        ids = [r.id for r in rows]
    tasks = queued("ingest")
    assert tasks == [{"task": "tasks.ingest.process_events", "args": [], "kwargs": {"ids": ids}}]
    assert queued("score") == [] and queued("learning") == []


def test_repeated_delivery_is_200_and_changes_nothing(
    signed: Signer, make_source, db: Database, queued
) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    body = fixture_bytes(HUBSPOT_BATCH)
    first = signed.hubspot(source, body).get_json()
    stored = inbox_count(db)
    again = signed.hubspot(source, body)  # a retry is signed afresh, with a new timestamp
    assert again.status_code == 200
    assert again.get_json()["accepted"] == 0
    assert again.get_json()["duplicates"] == first["accepted"]
    assert inbox_count(db) == stored
    assert len(queued("ingest")) == 1


def test_dedupe_ignores_event_id(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    event = {
        "eventId": 1,
        "subscriptionId": 2,
        "portalId": 62515,
        "appId": 3,
        "occurredAt": 1717430400000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 101,
        "propertyName": "email",
        "propertyValue": "a@example.com",
    }
    assert signed.hubspot(source, json.dumps([event]).encode()).status_code == 202
    # HubSpot reuses eventIds: a different change with the same eventId is a new event ...
    other = {**event, "propertyName": "jobtitle", "propertyValue": "CTO"}
    assert signed.hubspot(source, json.dumps([other]).encode()).status_code == 202
    # ... and the same change with a new eventId (a redelivery) is not.
    again = {**event, "eventId": 99, "attemptNumber": 1}
    assert signed.hubspot(source, json.dumps([again]).encode()).status_code == 200
    assert inbox_count(db) == 2


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_hubspot_signatures(signed: Signer, make_source, version: str) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot", signature_version=version)
    assert signed.hubspot(source, fixture_bytes(HUBSPOT_BATCH), version=version).status_code == 202
    bad = signed.hubspot(source, fixture_bytes(HUBSPOT_BATCH), version=version, secret="x" * 32)
    assert bad.status_code == 401


def _reject(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error and body["message"]


def test_missing_signature_is_401(webhook_app, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    response = webhook_app.test_client().post(
        source.webhook_path(), data=fixture_bytes(HUBSPOT_BATCH), content_type="application/json"
    )
    _reject(response, 401, "invalid_signature")
    assert inbox_count(db) == 0


def test_wrong_secret_is_401(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    _reject(
        signed.hubspot(source, fixture_bytes(HUBSPOT_BATCH), secret="not-the-secret-at-all"),
        401,
        "invalid_signature",
    )
    assert inbox_count(db) == 0


@pytest.mark.parametrize("skew_s", [-301, 301])
def test_stale_or_future_timestamp_is_401(signed: Signer, make_source, db: Database, skew_s: int) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    ts = int((time.time() + skew_s) * 1000)
    response = signed.hubspot(source, fixture_bytes(HUBSPOT_BATCH), timestamp_ms=ts)
    _reject(response, 401, "invalid_signature")
    assert "window" in response.get_json()["message"]
    assert inbox_count(db) == 0


def test_tampered_body_is_401(signed: Signer, make_source, db: Database, webhook_app) -> None:  # type: ignore[no-untyped-def]
    from core.signatures import hubspot_v3_signature

    source = make_source("hubspot")
    body = fixture_bytes(HUBSPOT_BATCH)
    ts = str(int(time.time() * 1000))
    sig = hubspot_v3_signature(
        source.secret, "POST", "https://bridge.example.com" + source.webhook_path(), body, ts
    )
    response = webhook_app.test_client().post(
        source.webhook_path(),
        data=body.replace(b"62515", b"62516"),
        content_type="application/json",
        headers={"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts},
    )
    _reject(response, 401, "invalid_signature")


def test_unknown_source_is_404(webhook_app) -> None:  # type: ignore[no-untyped-def]
    response = webhook_app.test_client().post(
        "/webhooks/hubspot/no-such-slug", data=b"[]", content_type="application/json"
    )
    _reject(response, 404, "unknown_source")


def test_disabled_source_is_403(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    with db.session() as session:
        set_enabled(session, source.name, False)
    _reject(signed.hubspot(source, fixture_bytes(HUBSPOT_BATCH)), 403, "source_disabled")
    assert inbox_count(db) == 0


def test_oversized_body_is_413(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    body = b"[" + b" " * (65 * 1024) + b"]"
    _reject(signed.hubspot(source, body), 413, "payload_too_large")
    assert inbox_count(db) == 0


def test_wrong_content_type_is_415(signed: Signer, make_source) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    _reject(
        signed.hubspot(source, fixture_bytes(HUBSPOT_BATCH), content_type="text/plain"),
        415,
        "unsupported_content_type",
    )


def test_malformed_json_is_400(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    _reject(signed.hubspot(source, b'[{"eventId": 1,'), 400, "not_json")
    assert inbox_count(db) == 0


def test_more_than_100_events_is_400(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    one = json.loads(fixture_bytes(HUBSPOT_BATCH))[0]
    body = json.dumps([{**one, "objectId": i} for i in range(101)]).encode()
    _reject(signed.hubspot(source, body), 400, "too_many_events")
    assert inbox_count(db) == 0


def test_partially_invalid_batch_keeps_the_valid_events(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    events = json.loads(fixture_bytes(HUBSPOT_BATCH))[:3]
    events[1] = {**events[1], "objectId": None}
    response = signed.hubspot(source, json.dumps(events).encode())
    assert response.status_code == 202
    body = response.get_json()
    assert [entry["index"] for entry in body["invalid"]] == [1]
    assert "objectId" in body["invalid"][0]["reason"]
    assert inbox_count(db) == body["accepted"] == 2


def test_all_invalid_batch_is_400_with_indexes(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    event = json.loads(fixture_bytes(HUBSPOT_BATCH))[0]
    response = signed.hubspot(source, json.dumps([{**event, "occurredAt": "yesterday"}]).encode())
    _reject(response, 400, "no_valid_events")
    assert [entry["index"] for entry in response.get_json()["invalid"]] == [0]
    assert inbox_count(db) == 0


def test_rotated_secret_overlap(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    events = json.loads(fixture_bytes(HUBSPOT_BATCH))
    with db.session() as session:
        rotated = rotate_secret(session, source.name, overlap=timedelta(hours=1))
    # During the overlap both the old and the new secret are accepted.
    assert signed.hubspot(source, json.dumps(events[:1]).encode()).status_code == 202
    assert signed.hubspot(rotated, json.dumps(events[1:2]).encode()).status_code == 202
    with db.session() as session:
        rotate_secret(session, source.name, overlap=timedelta(0), secret=rotated.secret + "-next")
    # With no overlap left, the oldest secret is refused.
    _reject(signed.hubspot(source, json.dumps(events[2:3]).encode()), 401, "invalid_signature")


def test_enqueue_failure_still_acknowledges_and_keeps_rows(
    settings_overrides: dict[str, Any], make_source, db: Database, clean_tables: None, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from bridge import create_app

    app = create_app(
        {
            **settings_overrides,
            "broker_url": f"redis+socket://{tmp_path}/no-broker.sock",
            "public_url": "https://bridge.example.com",
        }
    )
    source = make_source("hubspot")
    response = Signer(app.test_client()).hubspot(source, fixture_bytes(HUBSPOT_BATCH))
    assert response.status_code == 202
    with db.session() as session:
        assert (
            session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.status == "pending"))
            > 0
        )


# --- behavioural events (Standard Webhooks) --------------------------------------------------------


def test_events_batch_is_accepted(signed: Signer, make_source, db: Database, queued) -> None:  # type: ignore[no-untyped-def]
    source = make_source("events")
    response = signed.events(source, fixture_bytes("events/batch.json"))
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["accepted"] == inbox_count(db) > 0
    with db.session() as session:
        types = set(session.scalars(select(InboxEvent.event_type)))
    assert "page_view" in types
    assert len(queued("ingest")) == 1


def test_events_with_wrong_secret_or_stale_timestamp_are_401(
    signed: Signer, make_source, db: Database
) -> None:  # type: ignore[no-untyped-def]
    from storage.sources import new_secret

    source = make_source("events")
    body = fixture_bytes("events/batch.json")
    _reject(signed.events(source, body, secret=new_secret("events")), 401, "invalid_signature")
    _reject(signed.events(source, body, timestamp=int(time.time()) - 600), 401, "invalid_signature")
    _reject(signed.events(source, body, timestamp=int(time.time()) + 600), 401, "invalid_signature")
    assert inbox_count(db) == 0


# --- Salesforce ------------------------------------------------------------------------------------


def test_outbound_message_is_acked(signed: Signer, make_source, db: Database, queued) -> None:  # type: ignore[no-untyped-def]
    source = make_source("salesforce", org_id="00D5g000004ABCDEA2")
    response = signed.salesforce_soap(source, fixture_bytes("salesforce/outbound_lead.xml"))
    assert response.status_code == 200
    assert response.content_type.startswith("text/xml")
    assert b"<Ack>true</Ack>" in response.data
    assert inbox_count(db) == 1
    again = signed.salesforce_soap(source, fixture_bytes("salesforce/outbound_lead.xml"))
    assert again.status_code == 200 and b"<Ack>true</Ack>" in again.data
    assert inbox_count(db) == 1
    assert len(queued("ingest")) == 1


def test_outbound_message_from_another_org_gets_a_fault(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("salesforce", org_id="00D000000000001AAA")
    response = signed.salesforce_soap(source, fixture_bytes("salesforce/outbound_lead.xml"))
    assert 400 <= response.status_code < 500
    assert b"Fault" in response.data and b"organization_mismatch" in response.data
    assert inbox_count(db) == 0


def test_malformed_outbound_message_gets_a_fault(signed: Signer, make_source) -> None:  # type: ignore[no-untyped-def]
    source = make_source("salesforce", org_id="00D5g000004ABCDEA2")
    response = signed.salesforce_soap(source, b"<soapenv:Envelope><unclosed>")
    assert response.status_code == 400 and b"Fault" in response.data


def test_xml_entity_expansion_is_refused(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("salesforce", org_id="00D5g000004ABCDEA2")
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b"<soapenv:Envelope>&lol2;</soapenv:Envelope>"
    )
    response = signed.salesforce_soap(source, bomb)
    assert response.status_code == 400 and b"Fault" in response.data
    assert inbox_count(db) == 0


def test_signed_salesforce_json_is_accepted(signed: Signer, make_source, db: Database) -> None:  # type: ignore[no-untyped-def]
    source = make_source("salesforce", org_id="00D5g000004ABCDEA2")
    body = fixture_bytes("salesforce/flow_batch.json")
    response = signed.salesforce_json(source, body)
    assert response.status_code == 202, response.get_json()
    assert inbox_count(db) == response.get_json()["accepted"] > 0
    stale = signed.salesforce_json(source, body, timestamp=int(time.time()) - 3600)
    _reject(stale, 401, "invalid_signature")


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_count_deliveries_and_backlog(signed: Signer, make_source, webhook_app) -> None:  # type: ignore[no-untyped-def]
    source = make_source("hubspot")
    signed.hubspot(source, fixture_bytes(HUBSPOT_BATCH))
    signed.hubspot(source, fixture_bytes(HUBSPOT_BATCH), secret="wrong-secret-wrong-secret")
    text = webhook_app.test_client().get("/metrics").get_data(as_text=True)
    assert (
        f'leadbridge_webhook_deliveries_total{{kind="hubspot",outcome="accepted",source="{source.name}"}} 1.0'
        in text
    )
    assert (
        f'leadbridge_webhook_deliveries_total{{kind="hubspot",outcome="invalid_signature",source="{source.name}"}} 1.0'
        in text
    )
    assert "leadbridge_webhook_ack_seconds_bucket" in text
    backlog = [line for line in text.splitlines() if line.startswith("leadbridge_inbox_backlog ")]
    assert backlog and float(backlog[0].split()[1]) >= 1
