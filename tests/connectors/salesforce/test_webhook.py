"""Unit tests for the Salesforce parsers: Outbound Message SOAP, Ack/Fault responses, JSON relays."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.parsing import MalformedPayload, OrganizationMismatch, TooManyEvents
from connectors.salesforce.webhook import (
    ack_response,
    fault_response,
    same_salesforce_id,
)
from core.records import EVENT_TYPES
from tests.connectors.parsers import ORG_18, RECEIVED, kinds, outbound, relay, split_meta

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "salesforce"
ORG_15 = "00D5g000004ABCD"
VENDORS_DOC = Path("/work/shared/vendors/SALESFORCE.md")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def envelope(*notifications: str, org: str = ORG_18) -> str:
    """An outbound-message envelope like SALESFORCE.md §3.2 around the given Notification elements."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k5g000000XYZaAAG</ActionId>
   <SessionId xsi:nil="true"/>
   {"".join(notifications)}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""


def notification(
    nid: str = "04l5g00000DEF12AAA",
    record: str = "00Q5g00000ABCDEAA1",
    sobject: str = "sf:Lead",
    fields: str = "<sf:LastModifiedDate>2024-06-03T16:00:00.000Z</sf:LastModifiedDate>",
) -> str:
    id_element = f"<sf:Id>{record}</sf:Id>" if record else ""
    type_attr = f' xsi:type="{sobject}"' if sobject else ""
    return f"""<Notification><Id>{nid}</Id>
    <sObject{type_attr} xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{id_element}{fields}</sObject>
    </Notification>"""


# === Outbound Messages =================================================================================


def test_documented_lead_envelope():
    result = outbound(fixture("outbound_lead.xml"))
    assert result.invalid == [] and result.ignored == []
    (event,) = result.events
    assert (event.crm, event.object_type, event.object_id) == ("salesforce", "lead", "00Q5g00000ABCDEAA1")
    assert event.event_type == "property_change"
    assert event.occurred_at == datetime(2024, 6, 3, 16, 0, tzinfo=UTC)
    assert event.received_at == RECEIVED
    assert event.email == "ana@acme.io"
    assert event.source == "sf-main"
    props, meta = split_meta(event)
    assert props == {
        "Company": "Acme",
        "Email": "ana@acme.io",
        "FirstName": "Ana",
        "LastModifiedDate": "2024-06-03T16:00:00.000Z",
        "LastName": "Lopez",
        "LeadSource": "Web",
        "Status": "Open - Not Contacted",
    }
    assert meta == {
        "organizationId": ORG_18,
        "notificationId": "04l5g00000DEF12AAA",
        "sObjectType": "Lead",
        "actionId": "04k5g000000XYZaAAG",
    }
    assert len(event.dedupe_key) == 64


def test_fixture_matches_the_vendor_doc_example():
    if not VENDORS_DOC.exists():
        pytest.skip("team notes not available")
    block = re.search(r"### 3\.2.*?```xml\n(.*?)```", VENDORS_DOC.read_text(), re.DOTALL).group(1)
    doc_ids = re.findall(r"<(?:sf:)?Id>(\w+)<", block)
    fixture_ids = re.findall(r"<(?:sf:)?Id>(\w+)<", fixture("outbound_lead.xml").decode())
    assert doc_ids == fixture_ids


def test_session_id_is_never_kept():
    body = fixture("outbound_lead.xml").replace(
        b'<SessionId xsi:nil="true"/>', b"<SessionId>00D5g000004ABCD!AQ4AQFakeSessionToken</SessionId>"
    )
    event = outbound(body).events[0]
    assert "FakeSessionToken" not in repr(event)


def test_mixed_envelope_maps_each_sobject():
    result = outbound(fixture("outbound_mixed.xml"))
    assert kinds(result) == [
        ("contact", "0035g00000XYZ12AAA", "created"),
        ("account", "0015g00000QRS34AAA", "property_change"),
        ("opportunity", "0065g00000LMN56AAA", "property_change"),
    ]
    assert result.ignored == [(3, "sObject type 'Case' is not one we score")]
    contact, account, opportunity = result.events
    assert contact.email == "ben.okafor@globex.com"
    assert contact.properties["Phone"] is None  # xsi:nil
    assert account.email is None
    assert account.properties["NumberOfEmployees"] == "1200"  # values stay text, as Salesforce sends them
    assert opportunity.properties["StageName"] == "Closed Won"
    assert all(e.event_type in EVENT_TYPES for e in result.events)


@pytest.mark.parametrize("configured", [ORG_18, ORG_15, f" {ORG_18} "])
def test_org_id_matches_in_15_and_18_character_forms(configured: str):
    assert len(outbound(fixture("outbound_lead.xml"), org_id=configured).events) == 1


@pytest.mark.parametrize("configured", ["00D5g000004ZZZZEA2", "00D5g000004abcd", "00D000000000001"])
def test_org_id_mismatch_rejects_the_whole_message(configured: str):
    with pytest.raises(OrganizationMismatch) as excinfo:
        outbound(fixture("outbound_mixed.xml"), org_id=configured)
    assert excinfo.value.code == "organization_mismatch"
    assert ORG_18 not in str(excinfo.value) and configured not in str(excinfo.value)
    assert isinstance(excinfo.value, MalformedPayload)


def test_no_configured_org_accepts_any_org():
    assert len(outbound(fixture("outbound_lead.xml"), org_id=None).events) == 1


def test_same_salesforce_id():
    assert same_salesforce_id(ORG_18, ORG_15)
    assert same_salesforce_id(ORG_15, ORG_18)
    assert not same_salesforce_id(ORG_18, ORG_15.lower())
    assert not same_salesforce_id(ORG_18, "00D5g000004ABCDXXX")  # both 18: compared whole


@pytest.mark.parametrize("org", ["", "not-an-id", "<x/>"])
def test_missing_or_bad_organization_id_is_malformed(org: str):
    body = envelope(notification()).replace(
        f"<OrganizationId>{ORG_18}</OrganizationId>", f"<OrganizationId>{org}</OrganizationId>"
    )
    with pytest.raises(MalformedPayload) as excinfo:
        outbound(body)
    assert excinfo.value.code == "missing_org"


def test_parsing_goes_by_namespace_not_prefix():
    body = fixture("outbound_lead.xml").decode()
    renamed = (
        body.replace("soapenv:", "S:")
        .replace("xmlns:soapenv", "xmlns:S")
        .replace("sf:", "q1:")
        .replace("xmlns:sf", "xmlns:q1")
        .replace('xsi:type="q1:Lead"', 'xsi:type="q1:Lead"')
        .replace("xmlns:xsi", "xmlns:inst")
        .replace("xsi:", "inst:")
    )
    assert "sf:" not in renamed and "soapenv:" not in renamed
    a, b = outbound(body).events[0], outbound(renamed).events[0]
    assert (a.object_id, dict(a.properties), a.dedupe_key) == (b.object_id, dict(b.properties), b.dedupe_key)


def test_wrong_namespace_is_not_accepted():
    body = fixture("outbound_lead.xml").replace(b"http://soap.sforce.com/2005/09/outbound", b"urn:other")
    with pytest.raises(MalformedPayload, match="no notifications element"):
        outbound(body)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
<soapenv:Body>&lol2;</soapenv:Body></soapenv:Envelope>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&xxe;</soapenv:Body>
</soapenv:Envelope>"""
DTD_ONLY = b"""<?xml version="1.0"?><!DOCTYPE soapenv:Envelope SYSTEM "http://example.com/x.dtd">
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, DTD_ONLY], ids=["billion-laughs", "xxe", "dtd"])
def test_dtds_and_entities_are_refused(body: bytes):
    with pytest.raises(MalformedPayload) as excinfo:
        outbound(body)
    assert excinfo.value.code == "xml_forbidden"
    assert str(excinfo.value) == "XML DTDs and entity declarations are not allowed"


def test_more_than_100_notifications_is_rejected():
    body = envelope(*[notification(nid=f"04l5g00000D{i:06d}A") for i in range(101)])
    with pytest.raises(TooManyEvents, match="101 events; at most 100"):
        outbound(body)


def test_100_notifications_are_accepted():
    body = envelope(
        *[notification(nid=f"04l5g00000D{i:06d}A", record=f"00Q5g00000A{i:06d}A") for i in range(100)]
    )
    assert len(outbound(body).events) == 100


@pytest.mark.parametrize(
    "bad, reason",
    [
        (notification(nid=""), "Notification Id is missing or not a Salesforce id"),
        ("<Notification><Id>04l5g00000DEF19AAA</Id></Notification>", "Notification has no sObject"),
        (notification(sobject=""), "sObject has no xsi:type"),
        (notification(record=""), "sObject Id is missing or not a Salesforce id"),
        (notification(record="00Q-bad"), "sObject Id is missing or not a Salesforce id"),
        (
            notification(fields="<sf:LastModifiedDate>last tuesday</sf:LastModifiedDate>"),
            "LastModifiedDate is not an ISO-8601 date-time",
        ),
        (
            notification(fields="<sf:LastModifiedDate>2031-01-01T00:00:00Z</sf:LastModifiedDate>"),
            "LastModifiedDate is more than a day in the future",
        ),
    ],
)
def test_broken_notification_is_invalid_and_the_rest_is_kept(bad: str, reason: str):
    good = notification(nid="04l5g00000DEF20AAA", record="00Q5g00000ABCDEAA2")
    result = outbound(envelope(good, bad))
    assert [e.object_id for e in result.events] == ["00Q5g00000ABCDEAA2"]
    assert result.invalid == [(1, reason)]


def test_without_last_modified_date_the_receipt_time_is_used():
    event = outbound(envelope(notification(fields="<sf:Status>Open</sf:Status>"))).events[0]
    assert event.occurred_at == RECEIVED


def test_compound_field_keeps_one_level():
    fields = "<sf:Address><sf:City>Lyon</sf:City><sf:Country>France</sf:Country></sf:Address>"
    event = outbound(envelope(notification(fields=fields))).events[0]
    assert event.properties["Address"] == {"City": "Lyon", "Country": "France"}


def test_redelivery_has_the_same_keys_and_new_notifications_do_not():
    first = outbound(fixture("outbound_mixed.xml"))
    again = outbound(fixture("outbound_mixed.xml"), received_at=RECEIVED + timedelta(hours=2))
    assert [e.dedupe_key for e in first.events] == [e.dedupe_key for e in again.events]
    other = outbound(envelope(notification(nid="04l5g00000DEF99AAA")))
    same = outbound(envelope(notification()))
    assert other.events[0].dedupe_key != same.events[0].dedupe_key


def test_later_edit_of_the_same_record_is_a_new_event():
    later = notification(fields="<sf:LastModifiedDate>2024-06-03T16:03:00.000Z</sf:LastModifiedDate>")
    assert (
        outbound(envelope(later)).events[0].dedupe_key
        != outbound(envelope(notification())).events[0].dedupe_key
    )


def test_duplicate_notification_in_one_message_is_ignored():
    result = outbound(envelope(notification(), notification()))
    assert len(result.events) == 1
    assert result.ignored == [(1, "duplicate of entry 0 in this batch")]


# === Ack and Fault =====================================================================================


# The envelopes as SALESFORCE.md §3.3 and §3.4 give them (copied into fixtures so the suite runs without the notes).
EXPECTED_ACK = fixture("ack_documented.xml")
EXPECTED_FAULT = fixture("fault_documented.xml")


def _doc_block(heading: str) -> bytes:
    text = VENDORS_DOC.read_text()
    return re.search(rf"### {re.escape(heading)}.*?```xml\n(.*?)```", text, re.DOTALL).group(1).encode()


def test_ack_is_exactly_the_documented_envelope():
    assert ack_response() == EXPECTED_ACK
    root = ET.fromstring(ack_response())
    ack = root.find(".//{http://soap.sforce.com/2005/09/outbound}Ack")
    assert ack is not None and ack.text == "true"


def test_fault_is_exactly_the_documented_envelope():
    body = fault_response("Temporary failure storing notifications; please retry")
    assert body == EXPECTED_FAULT
    fault = ET.fromstring(body).find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert fault.findtext("faultcode") == "soapenv:Server"
    assert fault.findtext("faultstring") == "Temporary failure storing notifications; please retry"


def test_expected_envelopes_still_match_the_team_notes():
    if not VENDORS_DOC.exists():
        pytest.skip("team notes not available")
    assert _doc_block("3.3") == EXPECTED_ACK
    assert _doc_block("3.4") == EXPECTED_FAULT


def test_client_fault_escapes_and_shortens_the_message():
    body = fault_response('bad <org> & "id" \x00\x1b' + "x" * 500, code="Client")
    fault = ET.fromstring(body).find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert fault.findtext("faultcode") == "soapenv:Client"
    text = fault.findtext("faultstring")
    assert text.startswith('bad <org> & "id" x')
    assert len(text) <= 200


def test_fault_code_must_be_server_or_client():
    with pytest.raises(ValueError):
        fault_response("x", code="Receiver")


# === JSON relays =======================================================================================


def test_flow_batch():
    result = relay(json.loads(fixture("flow_batch.json")))
    assert result.invalid == [] and result.ignored == []
    assert kinds(result) == [
        ("lead", "00Q5g00000ABCDEAA1", "property_change"),
        ("opportunity", "0065g00000LMN56AAA", "outcome"),
        ("contact", "0035g00000XYZ12AAA", "created"),
    ]
    lead, opportunity, contact = result.events
    assert lead.occurred_at == datetime(2024, 6, 3, 16, 2, tzinfo=UTC)
    assert lead.email == "ana@acme.io"
    assert lead.properties["Status"] == "Working - Contacted"
    assert lead.properties["_meta"]["eventId"] == "flow-7f3c2a90-0001"
    assert opportunity.occurred_at == datetime(2024, 6, 3, 16, 2, tzinfo=UTC)  # epoch ms form
    assert opportunity.properties["IsWon"] is True  # JSON keeps its types
    assert contact.occurred_at == RECEIVED  # no occurredAt
    assert contact.email == "ben.okafor@globex.com"


def test_flow_single_object_and_bare_array():
    entry = json.loads(fixture("flow_batch.json"))["events"][0]
    assert len(relay(entry).events) == 1
    assert len(relay([entry, entry | {"eventId": "other"}]).events) == 2


def test_flow_top_level_org_mismatch_rejects_the_message():
    payload = json.loads(fixture("flow_batch.json"))
    with pytest.raises(OrganizationMismatch):
        relay(payload, org_id="00D000000000001AAA")
    assert len(relay(payload, org_id=ORG_15).events) == 3
    assert len(relay(payload, org_id=None).events) == 3


def test_flow_entry_org_mismatch_is_invalid():
    entry = json.loads(fixture("flow_batch.json"))["events"][0] | {"organizationId": "00D000000000001AAA"}
    result = relay({"events": [entry]})
    assert result.invalid == [(0, "organizationId does not match the org configured for this source")]


def test_flow_event_id_is_the_dedupe_key():
    entry = json.loads(fixture("flow_batch.json"))["events"][0]
    a = relay(entry).events[0]
    b = relay(entry | {"fields": {"Status": "Changed"}}, received_at=RECEIVED + timedelta(minutes=5)).events[
        0
    ]
    c = relay(entry | {"eventId": "flow-other"}).events[0]
    assert a.dedupe_key == b.dedupe_key != c.dedupe_key


def test_flow_retry_without_event_id_has_the_same_key():
    entry = {"object": "Lead", "id": "00Q5g00000ABCDEAA1", "fields": {"Status": "Working"}}
    first = relay(entry).events[0]
    retry = relay(entry, received_at=RECEIVED + timedelta(minutes=30)).events[0]
    changed = relay(entry | {"fields": {"Status": "Qualified"}}).events[0]
    assert first.dedupe_key == retry.dedupe_key != changed.dedupe_key
    assert first.event_type == "property_change"


@pytest.mark.parametrize(
    "entry, reason",
    [
        ({"object": "Lead"}, "id is missing or not a Salesforce id"),
        ({"object": "Lead", "id": 12}, "id is missing or not a Salesforce id"),
        ({"object": None, "id": "00Q5g00000ABCDEAA1"}, "object is missing"),
        (
            {"object": "Lead", "id": "00Q5g00000ABCDEAA1", "fields": []},
            "fields must be a JSON object, got an array",
        ),
        (
            {"object": "Lead", "id": "00Q5g00000ABCDEAA1", "occurredAt": "soon"},
            "occurredAt is not an ISO-8601 date-time",
        ),
        (
            {"object": "Lead", "id": "00Q5g00000ABCDEAA1", "occurredAt": True},
            "occurredAt must be epoch milliseconds",
        ),
        (
            {"object": "Lead", "id": "00Q5g00000ABCDEAA1", "eventId": ""},
            "eventId must be a non-empty string or an integer",
        ),
        (
            {"hello": "world"},
            "unrecognised entry: expected 'object' and 'id', or a Platform Event with a 'payload'",
        ),
        ([1, 2], "event must be a JSON object, got an array"),
    ],
)
def test_flow_invalid_entries(entry: Any, reason: str):
    result = relay({"events": [entry]})
    assert result.events == [] and result.invalid == [(0, reason)]


def test_flow_bad_type_names_the_allowed_values():
    result = relay({"object": "Lead", "id": "00Q5g00000ABCDEAA1", "type": "upserted"})
    assert result.invalid[0].reason.startswith("type must be one of: create, created, delete")


def test_flow_unknown_sobject_is_ignored():
    result = relay({"object": "Case", "id": "5005g00000CAS78AAA"})
    assert result.ignored == [(0, "sObject type 'Case' is not one we score")]


def test_json_more_than_100_entries_is_rejected():
    entry = {"object": "Lead", "id": "00Q5g00000ABCDEAA1"}
    with pytest.raises(TooManyEvents):
        relay({"events": [entry] * 101})


# --- Change Data Capture ---


def test_change_data_capture_update():
    result = relay(json.loads(fixture("cdc_lead_update.json")))
    (event,) = result.events
    assert (event.object_type, event.object_id, event.event_type) == (
        "lead",
        "00Q5g00000ABCDEAA1",
        "property_change",
    )
    assert event.occurred_at == datetime(2024, 6, 3, 16, 1, tzinfo=UTC)
    props, meta = split_meta(event)
    # Compound Name is flattened, unchanged (null) fields are left out, nulledFields become None.
    assert props == {
        "FirstName": "Anna",
        "Status": "Working - Contacted",
        "LastModifiedDate": "2024-06-03T16:01:00.000Z",
        "Title": None,
    }
    assert meta["changeOrigin"] == "com/salesforce/api/rest/59.0;client=leadbridge"
    assert meta["replayId"] == 6
    assert meta["changedFields"] == ["Status", "LastModifiedDate", "Name.FirstName"]


def test_change_data_capture_data_part_only_has_the_same_key():
    message = json.loads(fixture("cdc_lead_update.json"))
    assert relay(message).events[0].dedupe_key == relay(message["data"]).events[0].dedupe_key


@pytest.mark.parametrize(
    "change, event_type",
    [("CREATE", "created"), ("UPDATE", "property_change"), ("DELETE", "deleted"), ("UNDELETE", "restored")],
)
def test_change_data_capture_change_types(change: str, event_type: str):
    message = json.loads(fixture("cdc_lead_update.json"))
    message["data"]["payload"]["ChangeEventHeader"]["changeType"] = change
    assert relay(message).events[0].event_type == event_type


def test_change_data_capture_one_event_per_record():
    message = json.loads(fixture("cdc_lead_update.json"))
    header = message["data"]["payload"]["ChangeEventHeader"]
    header["recordIds"] = ["00Q5g00000ABCDEAA1", "00Q5g00000ABCDFAA2", "00Q*"]
    result = relay(message)
    assert [e.object_id for e in result.events] == ["00Q5g00000ABCDEAA1", "00Q5g00000ABCDFAA2"]
    assert result.events[0].dedupe_key != result.events[1].dedupe_key


@pytest.mark.parametrize("change", ["GAP_UPDATE", "GAP_OVERFLOW"])
def test_change_data_capture_gap_events_are_ignored(change: str):
    message = json.loads(fixture("cdc_lead_update.json"))
    message["data"]["payload"]["ChangeEventHeader"]["changeType"] = change
    assert relay(message).ignored == [(0, f"{change} event: re-read these records from Salesforce")]


def test_change_data_capture_problems():
    message = json.loads(fixture("cdc_lead_update.json"))
    header = message["data"]["payload"]["ChangeEventHeader"]
    wildcard = json.loads(json.dumps(message))
    wildcard["data"]["payload"]["ChangeEventHeader"]["recordIds"] = ["001*"]
    case = json.loads(json.dumps(message))
    case["data"]["payload"]["ChangeEventHeader"]["entityName"] = "Case"
    result = relay(
        [
            wildcard,
            case,
            message
            | {"data": message["data"] | {"payload": {"ChangeEventHeader": header | {"changeType": None}}}},
        ]
    )
    assert result.invalid == [
        (0, "ChangeEventHeader.recordIds holds no Salesforce id"),
        (2, "ChangeEventHeader.changeType is missing"),
    ]
    assert result.ignored == [(1, "sObject type 'Case' is not one we score")]


# --- Platform Events ---


def test_platform_event_cometd_message():
    (event,) = relay(json.loads(fixture("platform_event.json"))).events
    assert (event.object_type, event.object_id, event.event_type) == (
        "lead",
        "00Q5g00000ABCDEAA1",
        "property_change",
    )
    assert event.occurred_at == datetime(2024, 6, 3, 16, 3, 10, tzinfo=UTC)
    assert event.properties["Status"] == "Qualified"
    assert event.properties["Rating"] == "Hot"
    assert event.properties["Trigger__c"] == "Lead status flow"
    assert "Fields__c" not in event.properties and "Object__c" not in event.properties
    assert event.properties["_meta"]["EventUuid"] == "9f0e2a52-1c3b-4b8e-a0a9-3c4b1b0d7e11"


def test_platform_event_data_part_only():
    (event,) = relay(json.loads(fixture("platform_event_data_only.json"))).events
    assert (event.object_type, event.object_id) == ("account", "0015g00000QRS34AAA")
    assert event.properties["NumberOfEmployees"] == 1250


def test_platform_event_dedupe_uses_event_uuid_then_replay_id():
    message = json.loads(fixture("platform_event.json"))
    key = relay(message).events[0].dedupe_key
    assert relay(message, received_at=RECEIVED + timedelta(minutes=1)).events[0].dedupe_key == key
    other = json.loads(json.dumps(message))
    other["data"]["payload"]["EventUuid"] = "0e5c8f8e-0000-4000-8000-000000000000"
    assert relay(other).events[0].dedupe_key != key
    no_uuid = json.loads(fixture("platform_event_data_only.json"))
    later = json.loads(json.dumps(no_uuid))
    later["event"]["replayId"] = 4
    assert relay(no_uuid).events[0].dedupe_key != relay(later).events[0].dedupe_key


def test_platform_event_fields_inline_object_and_problems():
    message = json.loads(fixture("platform_event_data_only.json"))
    inline = json.loads(json.dumps(message))
    inline["payload"]["Fields__c"] = {"Industry": "Retail"}
    bad_json = json.loads(json.dumps(message))
    bad_json["payload"]["Fields__c"] = "{not json"
    no_object = json.loads(json.dumps(message))
    del no_object["payload"]["Object__c"]
    result = relay([inline, bad_json, no_object])
    assert result.events[0].properties["Industry"] == "Retail"
    assert result.invalid == [(1, "Fields__c is not valid JSON"), (2, "Object__c is missing")]
