"""Outbound webhooks from the sandbox: HubSpot v3 signatures, batching, retries; Salesforce envelopes; echoes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import defusedxml.ElementTree as SafeET

from connectors.hubspot.client import HubSpotConnector
from connectors.hubspot.echo import is_own_webhook_event
from connectors.hubspot.webhook import parse_hubspot
from connectors.registry import is_own_echo
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.webhook import ack_response, parse_salesforce_outbound
from core.records import Event
from core.signatures import hmac_signature_header, verify_hmac_header, verify_hubspot
from sandbox import DEFAULT_SF_ORG_ID, SandboxCRM

from .conftest import Receiver, admin

SECRET = "hubspot-client-secret-for-tests"


def _hubspot_target(crm: SandboxCRM, url: str, **extra: object) -> None:
    spec = {"kind": "hubspot", "url": url, "client_secret": SECRET, "retry_base_seconds": 0.2, **extra}
    assert admin(crm, "POST", "/webhooks", json=spec).status_code == 201


def test_hubspot_webhooks_are_signed_batched_and_parseable(sandbox: SandboxCRM, hubspot: HubSpotConnector,
                                                           receiver: Receiver) -> None:
    _hubspot_target(sandbox, receiver.url, flush_seconds=0.3)
    for i in range(120):
        sandbox.store.hs_create("contacts", {"email": f"x{i}@acme.io"}, source="CRM_UI")
    got = receiver.wait_for(lambda r: sum(len(json.loads(x.body)) for x in r) >= 120)
    assert all(len(json.loads(x.body)) <= 100 for x in got) and len(got) >= 2
    for delivery in got:
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        verify_hubspot([SECRET], version="v3", signature=headers["x-hubspot-signature-v3"], method="POST",
                       uri=receiver.url, body=delivery.body, timestamp_ms=headers["x-hubspot-request-timestamp"])
        verify_hubspot([SECRET], version="v1", signature=headers["x-hubspot-signature"], method="POST",
                       uri=receiver.url, body=delivery.body, timestamp_ms=None)
    first = json.loads(got[0].body)[0]
    assert first["subscriptionType"] == "contact.creation" and first["changeFlag"] == "CREATED"
    assert first["portalId"] == 62515 and first["attemptNumber"] == 0 and first["changeSource"] == "CRM_UI"
    result = parse_hubspot(got[0].body, source="hubspot", received_at=datetime.now(UTC), portal_id=62515)
    assert len(result.events) == len(json.loads(got[0].body)) and not result.invalid


def test_hubspot_retries_with_attempt_number(sandbox: SandboxCRM, receiver: Receiver) -> None:
    receiver.answers = [(500, "down", "text/plain"), (200, "", "application/json")]
    _hubspot_target(sandbox, receiver.url, flush_seconds=0.05)
    sandbox.store.hs_create("contacts", {"email": "retry@acme.io"}, source="CRM_UI")
    got = receiver.wait_for(lambda r: len(r) >= 2)
    first, second = json.loads(got[0].body), json.loads(got[1].body)
    assert [e["attemptNumber"] for e in first] == [0] and [e["attemptNumber"] for e in second] == [1]
    assert first[0]["eventId"] == second[0]["eventId"]
    # The sandbox records a delivery once the receiver's answer is back, which can be just after the
    # receiver has seen the request.
    deadline = time.monotonic() + 10
    while True:
        deliveries = admin(sandbox, "GET", "/webhooks/deliveries").json()["deliveries"]
        if len(deliveries) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [(d["attempt"], d["ok"]) for d in deliveries] == [(0, False), (1, True)]


def test_our_own_hubspot_write_comes_back_as_an_echo(sandbox: SandboxCRM, hubspot: HubSpotConnector,
                                                     receiver: Receiver) -> None:
    hubspot.provision_fields()
    cid = sandbox.store.hs_create("contacts", {"email": "echo@acme.io"}, source="CRM_UI")["id"]
    _hubspot_target(sandbox, receiver.url, flush_seconds=0.05)
    hubspot.write_fields({cid: {"score": 88, "grade": "A"}})
    sandbox.store.hs_update("contacts", cid, {"lifecyclestage": "marketingqualifiedlead"}, source="CRM_UI")
    got = receiver.wait_for(lambda r: sum(len(json.loads(x.body)) for x in r) >= 3)
    events = [e for x in got for e in parse_hubspot(x.body, source="hubspot", received_at=datetime.now(UTC),
                                                     portal_id=62515).events]
    raw = [e for x in got for e in json.loads(x.body)]
    own = {next(k for k in e.properties if k != "_meta"): is_own_echo(e) for e in events}
    assert own == {"leadbridge_score": True, "leadbridge_grade": True, "lifecyclestage": False}
    assert [is_own_webhook_event(e) for e in raw] == [e["propertyName"].startswith("leadbridge_") for e in raw]
    assert all(e["changeSource"] == "API" for e in raw if e["propertyName"].startswith("leadbridge_"))


def test_salesforce_outbound_messages_retry_until_acked(sandbox: SandboxCRM, salesforce: SalesforceConnector,
                                                       receiver: Receiver) -> None:
    salesforce.provision_fields(create=True)
    fault = ('<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
             "<soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>later</faultstring>"
             "</soapenv:Fault></soapenv:Body></soapenv:Envelope>")
    receiver.answers = [(500, fault, "text/xml"), (200, ack_response().decode(), "text/xml")]
    spec = {"kind": "salesforce", "url": receiver.url, "organization_id": DEFAULT_SF_ORG_ID, "flush_seconds": 0.05,
            "retry_base_seconds": 0.2, "objects": {"Lead": ["Email", "Company", "Status", "Leadbridge_Score__c"]}}
    assert admin(sandbox, "POST", "/webhooks", json=spec).status_code == 201
    lead = sandbox.store.sf_create("Lead", {"LastName": "Lopez", "Company": "Acme", "Email": "ana@acme.io"})
    got = receiver.wait_for(lambda r: len(r) >= 2)
    assert got[0].body == got[1].body  # the same message (same notification ids) until acknowledged
    assert got[0].headers["Content-Type"].startswith("text/xml")
    root = SafeET.fromstring(got[1].body)
    ns = {"o": "http://soap.sforce.com/2005/09/outbound", "sf": "urn:sobject.enterprise.soap.sforce.com"}
    notes = root.findall(".//o:Notification", ns)
    assert len(notes) == 1 and notes[0].find("o:Id", ns).text.startswith("04l")
    assert notes[0].find("o:sObject/sf:Email", ns).text == "ana@acme.io"
    parsed = parse_salesforce_outbound(got[1].body, source="sf", received_at=datetime.now(UTC),
                                       org_id=DEFAULT_SF_ORG_ID)
    assert [e.object_id for e in parsed.events] == [lead] and parsed.events[0].event_type == "created"
    assert admin(sandbox, "POST", "/webhooks/flush", params={"timeout": 5}).json()["drained"]
    # Our own write comes back with the whole record; against the previous snapshot only our field changed.
    previous = {k: v for k, v in parsed.events[0].properties.items() if k != "_meta"}
    receiver.answers = [(200, ack_response().decode(), "text/xml")]
    salesforce.write_fields({lead: {"score": 91}})
    again = receiver.wait_for(lambda r: len(r) >= 3)
    echo = parse_salesforce_outbound(again[2].body, source="sf", received_at=datetime.now(UTC),
                                     org_id=DEFAULT_SF_ORG_ID).events[0]
    assert echo.properties["Leadbridge_Score__c"] == "91.0"
    assert is_own_echo(echo, previous=previous)
    sandbox.store.sf_update("Lead", lead, {"Status": "Working - Contacted"}, source="CRM_UI")
    human = receiver.wait_for(lambda r: len(r) >= 4)[3]
    event = parse_salesforce_outbound(human.body, source="sf", received_at=datetime.now(UTC),
                                      org_id=DEFAULT_SF_ORG_ID).events[0]
    latest = {k: v for k, v in echo.properties.items() if k != "_meta"}
    assert not is_own_echo(event, previous=latest)


def test_salesforce_flow_callouts_are_hmac_signed(sandbox: SandboxCRM, receiver: Receiver) -> None:
    spec = {"kind": "salesforce", "format": "json", "url": receiver.url, "organization_id": DEFAULT_SF_ORG_ID,
            "client_secret": "flow-secret", "flush_seconds": 0.05, "objects": {"Lead": ["Email", "Status"]}}
    assert admin(sandbox, "POST", "/webhooks", json=spec).status_code == 201
    lead = sandbox.store.sf_create("Lead", {"LastName": "Lopez", "Company": "Acme", "Email": "ana@acme.io"})
    got = receiver.wait_for(lambda r: len(r) >= 1)[0]
    verify_hmac_header(["flow-secret"], got.headers["X-Leadbridge-Signature"], got.body)
    body = json.loads(got.body)
    assert body["organizationId"] == DEFAULT_SF_ORG_ID
    assert body["events"][0]["object"] == "Lead" and body["events"][0]["id"] == lead
    assert body["events"][0]["fields"] == {"Email": "ana@acme.io"}
    assert hmac_signature_header("flow-secret", got.body, 1)  # the sandbox signs with the shared helper


def test_echo_rules_on_canonical_events() -> None:
    now = datetime.now(UTC)

    def ev(crm: str, props: dict, event_type: str = "property_change") -> Event:
        return Event("s", crm, "contact", "1", event_type, now, now, props)  # type: ignore[arg-type]

    assert is_own_echo(ev("hubspot", {"leadbridge_score": "80", "_meta": {"changeSource": "API"}}))
    assert not is_own_echo(ev("hubspot", {"email": "new@acme.io"}))
    assert not is_own_echo(ev("hubspot", {"leadbridge_score": "80"}, "created"))
    assert is_own_echo(ev("salesforce", {"Leadbridge_Score__c": 80, "LastModifiedDate": "x"}))  # flow shape
    assert not is_own_echo(ev("salesforce", {"Email": "a@b.c", "Leadbridge_Score__c": "80.0"}))  # no snapshot
    assert is_own_echo(ev("salesforce", {"Email": "a@b.c", "Leadbridge_Score__c": "80.0"}),
                       previous={"Email": "a@b.c", "Leadbridge_Score__c": 70})
    assert not is_own_echo(ev("salesforce", {"Email": "z@b.c", "Leadbridge_Score__c": "80.0"}),
                           previous={"Email": "a@b.c", "Leadbridge_Score__c": 70})


def test_sandbox_clock_header_backdates_records_and_their_webhook_events(sandbox: SandboxCRM,
                                                                         receiver: Receiver) -> None:
    """X-Sandbox-Time (sandbox-only) sets createdate/lastmodifieddate and occurredAt; bad values get a 400."""
    import requests

    from sandbox import DEFAULT_HUBSPOT_TOKEN

    _hubspot_target(sandbox, receiver.url, flush_seconds=0.05)
    auth = {"Authorization": f"Bearer {DEFAULT_HUBSPOT_TOKEN}"}
    created_ms, won_ms = 1_600_000_000_000, 1_600_777_600_000
    made = requests.post(sandbox.base_url + "/crm/v3/objects/contacts/batch/create", timeout=5,
                         headers={**auth, "X-Sandbox-Time": str(created_ms)},
                         json={"inputs": [{"properties": {"email": "old@acme.io"}}]})
    assert made.status_code == 201
    cid = made.json()["results"][0]["id"]
    moved = requests.post(sandbox.base_url + "/crm/v3/objects/contacts/batch/update", timeout=5,
                          headers={**auth, "X-Sandbox-Time": "2020-09-22T12:26:40Z"},
                          json={"inputs": [{"id": cid, "properties": {"lifecyclestage": "customer"}}]})
    assert moved.status_code == 200
    record = sandbox.store.hs_get("contacts", cid)
    assert record is not None and record["properties"]["createdate"] == "2020-09-13T12:26:40.000Z"
    assert record["properties"]["lastmodifieddate"] == "2020-09-22T12:26:40.000Z"
    got = receiver.wait_for(lambda r: sum(len(json.loads(x.body)) for x in r) >= 2)
    events = [e for x in got for e in json.loads(x.body)]
    assert sorted(e["occurredAt"] for e in events) == [created_ms, won_ms]
    for bad in ("yesterday", str(int(time.time() * 1000) + 3_600_000)):
        refused = requests.post(sandbox.base_url + "/crm/v3/objects/contacts", timeout=5,
                                headers={**auth, "X-Sandbox-Time": bad}, json={"properties": {"email": "x@acme.io"}})
        assert refused.status_code == 400 and "X-Sandbox-Time" in refused.json()["message"]
