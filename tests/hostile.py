"""Hostile webhook bodies: well-signed deliveries whose values are huge, non-finite, not Unicode, nested or odd.

Each builder returns raw bytes (JSON numbers such as 1e999 and lone-surrogate escapes cannot be produced by
json.dumps, so bodies are assembled as text where needed). Used by the hostile-input and fuzz tests.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

INF = "__INF__"  # placeholder replaced by a bare 1e999 in the JSON text (Python's json reads it as infinity)
NEG_INF = "__NEGINF__"
HUGE_INT = "__HUGEINT__"  # 10**40 as a bare JSON number
SURROGATE = "\ud800"
NUL = "\x00"
BIG_TEXT = "x" * 300_000


def raw_json(value: Any) -> bytes:
    """JSON text of `value` with the placeholders turned into numbers json.dumps cannot write."""
    text = json.dumps(value)  # ensure_ascii: lone surrogates and NUL become \\ud800 and \\u0000 escapes
    text = text.replace(f'"{INF}"', "1e999").replace(f'"{NEG_INF}"', "-1e999").replace(f'"{HUGE_INT}"', "1" + "0" * 40)
    return text.encode()


def deep(levels: int, leaf: Any = "x") -> Any:
    """An object nested `levels` deep."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def deep_text(levels: int) -> bytes:
    """A JSON body nested deeper than any parser should follow."""
    return ("[" * levels + "]" * levels).encode()


HOSTILE_VALUES: list[Any] = [
    INF, NEG_INF, HUGE_INT, 1e30, -1e30, "1e30", "1e999", "NaN", "Infinity", "-1",
    SURROGATE, f"a{SURROGATE}b", NUL, f"a{NUL}b", BIG_TEXT, deep(60), [deep(20)] * 3, {"nested": deep(40)},
    True, None, [], {}, 2**63, -(2**63) - 1, "2024-13-45T99:99:99Z",
]
HOSTILE_TIMES_MS: list[Any] = [-1, 0, 10**20, 1e999, "abc", 946684799999, 253402300800000, INF, True, None, [], "1" * 30]
HOSTILE_TIMES_ISO: list[Any] = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
                                "2999-01-01T00:00:00Z", "not a date", 12345, f"2024{NUL}", SURROGATE, "", INF]


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)


def iso_now() -> str:
    """The current time as ISO-8601."""
    return datetime.now(UTC).isoformat()


# --- HubSpot -----------------------------------------------------------------------------------------------


def hubspot_event(**overrides: Any) -> dict[str, Any]:
    """A documented HubSpot propertyChange entry (fresh ids and time), with overrides."""
    entry = {"eventId": int(uuid.uuid4().int % 10**9), "subscriptionId": 2002, "portalId": 62515, "appId": 54321,
             "occurredAt": now_ms(), "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
             "objectId": 101, "propertyName": "numberofemployees", "propertyValue": "250",
             "changeSource": "CRM_UI", "sourceId": "userId:45678"}
    entry.update(overrides)
    return entry


def hubspot_hostile_batches() -> list[bytes]:
    """One body per hostile class for the HubSpot endpoint."""
    bodies = [raw_json([hubspot_event(propertyValue=v, objectId=201 + i) for i, v in enumerate(HOSTILE_VALUES)])]
    bodies.append(raw_json([hubspot_event(propertyName=name, objectId=301)
                            for name in (f"a{NUL}", SURROGATE, "x" * 300, "")]))
    bodies.append(raw_json([hubspot_event(changeSource=v, sourceId=v, objectId=302) for v in HOSTILE_VALUES[:12]]))
    bodies.append(raw_json([hubspot_event(occurredAt=t, objectId=303) for t in HOSTILE_TIMES_MS]))
    bodies.append(raw_json([hubspot_event(**{field: v}) for field in ("objectId", "portalId", "subscriptionType")
                            for v in (f"1{NUL}", SURROGATE, INF, -5, {"x": 1}, [1], "9" * 25)]))
    bodies.append(raw_json([hubspot_event(subscriptionType="contact.merge", objectId=304, mergedObjectIds=v)
                            for v in ([INF], [SURROGATE], deep(30), [2**64])]))
    bodies.append(raw_json([hubspot_event(objectId=400 + i) for i in range(5000)]))  # 5,000-entry batch
    bodies.append(deep_text(5000))
    bodies.append(raw_json({"not": "an array"}))
    bodies.append(b"")
    bodies.append(b"\xff\xfe not utf-8")
    return bodies


# --- behavioural events (Segment) --------------------------------------------------------------------------


def segment_identify(user_id: Any, traits: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A Segment identify call."""
    entry = {"type": "identify", "userId": user_id, "traits": traits, "timestamp": iso_now(),
             "messageId": uuid.uuid4().hex}
    entry.update(overrides)
    return entry


def events_hostile_batches(email: str) -> list[bytes]:
    """One body per hostile class for the events endpoint; the first carries values for a real person."""
    bodies = [raw_json({"batch": [segment_identify(f"hostile-{i}", {"email": email, "employees": v, "title": v,
                                                                    "industry": v, "company": "Acme"})
                                  for i, v in enumerate(HOSTILE_VALUES)]})]
    bodies.append(raw_json({"batch": [segment_identify(v, {"email": email}) for v in
                                      (SURROGATE, f"u{NUL}", "u" * 100, INF, {"id": 1}, [1], True, 2**70)]}))
    bodies.append(raw_json({"batch": [segment_identify("hostile-time", {}, timestamp=t) for t in HOSTILE_TIMES_ISO]}))
    bodies.append(raw_json({"batch": [{"type": "track", "userId": "hostile-track", "event": v, "properties": {"p": v}}
                                      for v in HOSTILE_VALUES[:14]]}))
    bodies.append(raw_json({"batch": [segment_identify("hostile-shape", v) for v in ("text", 5, [1], INF)]}))
    bodies.append(raw_json({"batch": [{"type": v, "userId": "x"} for v in (SURROGATE, NUL, INF, {}, [])]}))
    bodies.append(raw_json({"batch": [segment_identify(f"many-{i}", {}) for i in range(5000)]}))
    bodies.append(raw_json({"batch": [segment_identify("ctx", {}, context=deep(800))]}))
    bodies.append(deep_text(5000))
    bodies.append(b"")
    return bodies


# --- Salesforce --------------------------------------------------------------------------------------------


def flow_entry(record_id: str, fields: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A Flow HTTP callout entry (our documented shape)."""
    entry = {"object": "Lead", "id": record_id, "type": "property_change", "fields": fields, "occurredAt": iso_now(),
             "eventId": uuid.uuid4().hex}
    entry.update(overrides)
    return entry


def salesforce_json_hostile_batches(email: str) -> list[bytes]:
    """One body per hostile class for the Salesforce JSON endpoint."""
    bodies = [raw_json([flow_entry(f"00Q5g00000HOST{i:03d}A", {"Email": email, "NumberOfEmployees": v, "Title": v,
                                                               "Company": "Acme"})
                        for i, v in enumerate(HOSTILE_VALUES[:80])])]
    bodies.append(raw_json([flow_entry(v, {}) for v in (SURROGATE, f"00Q5g00000ABCDE{NUL}", INF, 12, {"a": 1})]))
    bodies.append(raw_json([flow_entry("00Q5g00000TIMEAAAA", {}, occurredAt=t) for t in
                            [*HOSTILE_TIMES_ISO, *HOSTILE_TIMES_MS]]))
    bodies.append(raw_json([{"data": {"schema": "x", "payload": {"Object__c": "Lead", "Record_Id__c": "00Q5g00000PEVTAAAA",
                                                                 "Fields__c": json.dumps(deep(900)),
                                                                 "Big__c": BIG_TEXT, "Bad__c": SURROGATE},
                                      "event": {"replayId": INF}}}]))
    bodies.append(raw_json([flow_entry(f"00Q5g0000{i:06d}AAA", {}) for i in range(5000)]))
    bodies.append(deep_text(5000))
    bodies.append(raw_json("a string"))
    return bodies


def outbound_message(notifications: list[str], org: str) -> bytes:
    """A SOAP Outbound Message envelope around already-built <Notification> elements."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k5g000000XYZaAAG</ActionId>"
        + "".join(notifications) + "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode("utf-8", "surrogatepass")  # a lone surrogate goes out as the invalid bytes a broken sender would send


def notification(record_id: str, fields: dict[str, str], index: int = 0) -> str:
    """One <Notification> with a Lead sObject (values XML-escaped as given)."""
    inner = "".join(f"<sf:{name}>{value}</sf:{name}>" for name, value in fields.items())
    return (f"<Notification><Id>04l5g00000DEF{index:03d}AA</Id>"
            f'<sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"<sf:Id>{record_id}</sf:Id>{inner}</sObject></Notification>")


def salesforce_soap_hostile_batches(email: str, org: str) -> list[bytes]:
    """One body per hostile class for the Outbound Message endpoint."""
    modified = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    values = ["1e30", "1e999", "NaN", "-5", BIG_TEXT, "9" * 400]
    bodies = [outbound_message([notification(f"00Q5g00000SOAP{i:03d}A", {
        "Email": escape(email), "NumberOfEmployees": v, "Title": v, "LastModifiedDate": modified}, i)
        for i, v in enumerate(values)], org)]
    bodies.append(outbound_message([notification("00Q5g00000SOAPNULA", {"Title": "&#0;"})], org))  # not XML
    bodies.append(outbound_message([notification("00Q5g00000SOAPSURA", {"Title": "&#xD800;"})], org))
    bodies.append(outbound_message([notification("00Q5g00000SOAPTIMA", {"LastModifiedDate": t}, i)
                                    for i, t in enumerate(("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "junk"))],
                                   org))
    bodies.append(outbound_message([notification("00Q5g00000SOAPDEPA", {"Street": "<a>" * 3000 + "</a>" * 3000})],
                                   org))
    bodies.append(outbound_message([notification(f"00Q5g0000{i:06d}AAA", {}, i % 1000) for i in range(5000)], org))
    bodies.append(b"<notxml")
    return bodies
