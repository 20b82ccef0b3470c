"""Salesforce deliveries -> canonical Events: Outbound Message SOAP envelopes and JSON relays.

Outbound Messages (`parse_salesforce_outbound`): the SOAP 1.1 envelope a workflow rule or flow POSTs,
with at most 100 `Notification` elements (SOAP API Developer Guide, "Outbound Messaging",
https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_wsdl.htm;
vendors/SALESFORCE.md §3 in the team's notes):

    <soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ...>
     <soapenv:Body>
      <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
       <OrganizationId>00D...</OrganizationId> <ActionId>04k...</ActionId> ...
       <Notification>
        <Id>04l...</Id>
        <sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
         <sf:Id>00Q...</sf:Id> <sf:Email>ana@acme.io</sf:Email> ... </sObject>
       </Notification> ...

Parsed with defusedxml (a DTD or an entity declaration makes the body malformed), by namespace, never by
prefix. Lead, Contact, Account and Opportunity are used; other sObjects are reported as ignored.
Answer with `ack_response()` once the events are stored, or `fault_response()` to make Salesforce retry.

JSON relays (`parse_salesforce_json`), for Flow HTTP callouts and Platform Event / Change Data Capture
relays, signed with `core.signatures.hmac_signature_header`. The body is one entry, a JSON array of
entries, or `{"organizationId": "00D...", "events": [entries]}`, at most 100 entries. An entry is one of:

1. Our flow shape, meant for Flow HTTP callouts:
   `{"object": "Lead", "id": "00Q...", "type": "property_change", "fields": {"Status": "Working"},
     "occurredAt": "2024-06-03T16:00:00.000Z", "eventId": "..."}`
   `type` is created | property_change | deleted | restored | merged | outcome (or CREATE/UPDATE/
   DELETE/UNDELETE), default property_change; `occurredAt` is ISO-8601 or epoch ms, default the time
   of receipt; `eventId` (recommended, unique per change) is the dedupe key when present.
2. A Change Data Capture event as CometD delivers it, `{"data": {"schema": ..., "payload":
   {"ChangeEventHeader": {...}, <fields>}, "event": {"replayId": N}}, "channel": "/data/LeadChangeEvent"}`,
   or just its `data` part (https://developer.salesforce.com/docs/atlas.en-us.change_data_capture.meta/
   change_data_capture/cdc_message_structure.htm). One Event per id in `recordIds`; gap and overflow
   events are reported as ignored (they mean: re-read those records from Salesforce).
3. A Platform Event as CometD delivers it, `{"data": {"schema": ..., "payload": {"CreatedDate": ...,
   "CreatedById": ..., <custom fields>}, "event": {"replayId": N}}, "channel": "/event/Name__e"}`, or its
   `data` part (https://developer.salesforce.com/docs/atlas.en-us.platform_events.meta/platform_events/
   platform_events_subscribe_cometd.htm). Platform Events have no fixed record fields, so the relay's
   event must follow our convention: `Object__c` (sObject name), `Record_Id__c`, optional
   `Change_Type__c` (same vocabulary as `type` above) and `Fields__c` (a JSON object, as text or inline);
   other custom `__c` fields are kept as properties. `EventUuid` is the dedupe key when present.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from connectors.parsing.common import (META_KEY, BatchBuilder, EventIgnored, EventInvalid, as_utc,
                                       check_batch_size, check_occurred_at, clip, is_int, iso_to_datetime,
                                       json_type, load_json, ms_to_datetime, normalize_email,
                                       reject_json_constant, stable_hash)
from connectors.parsing.errors import MalformedPayload, OrganizationMismatch
from connectors.parsing.results import ParseResult
from core.records import Event

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100  # Salesforce puts at most 100 notifications in one outbound message
MAX_JSON_EVENTS = 100

SOBJECT_TYPES = {"Lead": "lead", "Contact": "contact", "Account": "account", "Opportunity": "opportunity"}
_SOBJECT_BY_LOWER = {name.lower(): kind for name, kind in SOBJECT_TYPES.items()}
# Change vocabulary accepted from JSON relays -> canonical event type.
CHANGE_TYPES = {
    "created": "created",
    "property_change": "property_change",
    "deleted": "deleted",
    "restored": "restored",
    "merged": "merged",
    "outcome": "outcome",
    "create": "created",
    "update": "property_change",
    "delete": "deleted",
    "undelete": "restored",
}
PLATFORM_EVENT_FIELDS = ("Object__c", "Record_Id__c", "Change_Type__c", "Fields__c")

ACK_RESPONSE = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body>
  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">
   <Ack>true</Ack>
  </notificationsResponse>
 </soapenv:Body>
</soapenv:Envelope>
"""

_FAULT_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body>
  <soapenv:Fault>
   <faultcode>soapenv:{code}</faultcode>
   <faultstring>{message}</faultstring>
  </soapenv:Fault>
 </soapenv:Body>
</soapenv:Envelope>
"""
MAX_FAULT_MESSAGE = 200  # Salesforce shows the text on its delivery-status page: keep it short


def ack_response() -> bytes:
    """Return the SOAP Ack that tells Salesforce every notification in the message was received."""
    return ACK_RESPONSE


def fault_response(message: str, *, code: str = "Server") -> bytes:
    """Return a SOAP 1.1 Fault; code "Server" (retry: temporary) or "Client" (we will never accept it)."""
    if code not in ("Server", "Client"):
        raise ValueError("fault code must be 'Server' or 'Client'")
    text = "".join(ch for ch in message if _xml_char(ch))[:MAX_FAULT_MESSAGE]
    return _FAULT_TEMPLATE.format(code=code, message=escape(text)).encode("utf-8")


# --- Outbound Messages ---------------------------------------------------------------------------------


def parse_salesforce_outbound(
    body: bytes, *, source: str, received_at: datetime, org_id: str | None
) -> ParseResult:
    """Parse an Outbound Message envelope; the whole message is refused when its org is not `org_id`.

    Raises:
        OrganizationMismatch: OrganizationId differs from `org_id` (a MalformedPayload subclass).
        MalformedPayload: not XML, a DTD/entity, not an outbound-message envelope, no OrganizationId,
            or more than 100 notifications.
    """
    received_at = as_utc(received_at)
    notifications = _notifications_element(_parse_xml(body))
    organization = _child_text(notifications, "OrganizationId")
    if not organization or not _is_salesforce_id(organization):
        raise MalformedPayload("OrganizationId is missing or not a Salesforce id", code="missing_org")
    if org_id is not None and not same_salesforce_id(organization, org_id):
        raise OrganizationMismatch()
    action_id = _child_text(notifications, "ActionId")
    items = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    check_batch_size(len(items), MAX_NOTIFICATIONS)

    batch = BatchBuilder(source)
    for index, item in enumerate(items):
        batch.run(
            index,
            lambda item=item: [_parse_notification(item, source, received_at, organization, action_id)],
        )
    return batch.result


def same_salesforce_id(a: str, b: str) -> bool:
    """Compare Salesforce ids, treating the 15-character and 18-character forms of one id as equal."""
    a, b = a.strip(), b.strip()
    if _is_salesforce_id(a) and _is_salesforce_id(b) and (len(a) == 15 or len(b) == 15):
        return a[:15] == b[:15]  # the 15-char form is case-sensitive; the 3 extra chars are a checksum
    return a == b


def _parse_xml(body: bytes) -> Element:
    if not isinstance(body, (bytes, bytearray, memoryview)) or not bytes(body).strip():
        raise MalformedPayload("body is empty; expected a SOAP envelope", code="empty_body")
    try:
        return safe_xml.fromstring(bytes(body), forbid_dtd=True)
    except DefusedXmlException:
        raise MalformedPayload(
            "XML DTDs and entity declarations are not allowed", code="xml_forbidden"
        ) from None
    except ParseError as exc:
        line, column = exc.position
        raise MalformedPayload(
            f"body is not well-formed XML (line {line}, column {column})", code="not_xml"
        ) from None
    except (LookupError, ValueError):  # e.g. an unknown encoding in the XML declaration
        raise MalformedPayload(
            "body is not well-formed XML (bad encoding declaration)", code="not_xml"
        ) from None


def _notifications_element(root: Element) -> Element:
    if root.tag != f"{{{SOAP_ENV_NS}}}Envelope":
        raise MalformedPayload("expected a SOAP 1.1 Envelope", code="wrong_shape")
    body = root.find(f"{{{SOAP_ENV_NS}}}Body")
    notifications = body.find(f"{{{OUTBOUND_NS}}}notifications") if body is not None else None
    if notifications is None:
        raise MalformedPayload(
            f"SOAP Body holds no notifications element in namespace {OUTBOUND_NS}", code="wrong_shape"
        )
    return notifications


def _parse_notification(
    item: Element, source: str, received_at: datetime, organization: str, action_id: str | None
) -> Event:
    notification_id = _child_text(item, "Id")
    if not notification_id or not _is_salesforce_id(notification_id):
        raise EventInvalid("Notification Id is missing or not a Salesforce id")
    sobject = item.find(f"{{{OUTBOUND_NS}}}sObject")
    if sobject is None:
        raise EventInvalid("Notification has no sObject")
    xsi_type = sobject.get(f"{{{XSI_NS}}}type")
    if not xsi_type:
        raise EventInvalid("sObject has no xsi:type")
    type_name = xsi_type.rpartition(":")[2]  # "sf:Lead" -> "Lead"; the prefix is not significant
    object_type = SOBJECT_TYPES.get(type_name)
    if object_type is None:
        raise EventIgnored(f"sObject type {clip(type_name)!r} is not one we score")

    fields = _sobject_fields(sobject)
    record_id = fields.pop("Id", None)
    if not isinstance(record_id, str) or not _is_salesforce_id(record_id):
        raise EventInvalid("sObject Id is missing or not a Salesforce id")

    last_modified = fields.get("LastModifiedDate")
    if isinstance(last_modified, str) and last_modified:
        occurred_at = iso_to_datetime(last_modified, "LastModifiedDate")
        occurred_at = check_occurred_at(occurred_at, received_at, "LastModifiedDate")
    else:
        # Outbound messages carry the record as of sending; without LastModifiedDate, receipt is closest.
        occurred_at = received_at
    event_type = "created" if _is_creation(fields) else "property_change"

    properties: dict[str, Any] = dict(fields)
    # SessionId is deliberately not kept: it is a live credential for the org.
    properties[META_KEY] = {
        "organizationId": organization,
        "notificationId": notification_id,
        "sObjectType": type_name,
        **({"actionId": action_id} if action_id else {}),
    }
    dedupe_key = stable_hash(
        "salesforce", organization[:15], notification_id, record_id[:15], last_modified or None
    )
    # Outbound messages name the field "Email" only; properties holds the same fields as `fields`.
    return _event(source, object_type, record_id, event_type, occurred_at, received_at, properties,
                  dedupe_key, email_keys=("Email",))


def _sobject_fields(sobject: Element) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for child in sobject:
        if not isinstance(child.tag, str):
            continue
        name = _local_name(child.tag)
        if len(child):
            # Compound values (an address, say) arrive as nested elements: keep one level, by local name.
            fields[name] = {_local_name(g.tag): _element_value(g) for g in child if isinstance(g.tag, str)}
        else:
            fields[name] = _element_value(child)
    return fields


def _element_value(element: Element) -> str | None:
    if element.get(f"{{{XSI_NS}}}nil") == "true":
        return None
    return element.text or ""


def _is_creation(fields: dict[str, Any]) -> bool:
    # Outbound messages do not say why they fired; a record never edited since creation is a creation.
    created, modified = fields.get("CreatedDate"), fields.get("LastModifiedDate")
    return isinstance(created, str) and bool(created) and created == modified


def _child_text(parent: Element, name: str) -> str | None:
    child = parent.find(f"{{{OUTBOUND_NS}}}{name}")
    if child is None or child.get(f"{{{XSI_NS}}}nil") == "true" or child.text is None:
        return None
    return child.text.strip()


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _is_salesforce_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) in (15, 18) and value.isascii() and value.isalnum()


# --- JSON relays ---------------------------------------------------------------------------------------


def parse_salesforce_json(
    body: bytes, *, source: str, received_at: datetime, org_id: str | None
) -> ParseResult:
    """Parse a Flow callout / Platform Event / Change Data Capture relay body (shapes in the module doc).

    Raises:
        OrganizationMismatch: the top-level organizationId differs from `org_id`.
        MalformedPayload: not JSON, not an object or array, or more than 100 entries.
    """
    received_at = as_utc(received_at)
    payload = load_json(body)
    organization: str | None = None
    if isinstance(payload, dict) and "events" in payload:
        items = payload["events"]
        if not isinstance(items, list):
            raise MalformedPayload(f"'events' must be an array, got {json_type(items)}", code="wrong_shape")
        organization = payload.get("organizationId")
        if organization is not None:
            if not _is_salesforce_id(organization):
                raise MalformedPayload("organizationId is not a Salesforce id", code="wrong_shape")
            if org_id is not None and not same_salesforce_id(organization, org_id):
                raise OrganizationMismatch()
    elif isinstance(payload, list):
        items = payload
    elif isinstance(payload, dict):
        items = [payload]
    else:
        raise MalformedPayload(
            f"expected a JSON object or array of Salesforce events, got {json_type(payload)}",
            code="wrong_shape",
        )
    check_batch_size(len(items), MAX_JSON_EVENTS)

    batch = BatchBuilder(source)
    for index, item in enumerate(items):
        batch.run(index, lambda item=item: _parse_json_entry(item, source, received_at, org_id, organization))
    return batch.result


def _parse_json_entry(
    item: Any, source: str, received_at: datetime, org_id: str | None, organization: str | None
) -> list[Event]:
    if not isinstance(item, dict):
        raise EventInvalid(f"event must be a JSON object, got {json_type(item)}")
    channel = item.get("channel") if isinstance(item.get("channel"), str) else None
    message = item["data"] if isinstance(item.get("data"), dict) else item
    if isinstance(message.get("payload"), dict):
        payload = message["payload"]
        replay = message.get("event", {}).get("replayId") if isinstance(message.get("event"), dict) else None
        stream = channel or (message.get("schema") if isinstance(message.get("schema"), str) else None)
        if isinstance(payload.get("ChangeEventHeader"), dict):
            return _parse_change_event(payload, source, received_at, stream, replay)
        return [_parse_platform_event(payload, source, received_at, stream, replay)]
    if "object" in item:
        return [_parse_flow_entry(item, source, received_at, org_id, organization)]
    raise EventInvalid("unrecognised entry: expected 'object' and 'id', or a Platform Event with a 'payload'")


def _parse_flow_entry(
    item: dict[str, Any], source: str, received_at: datetime, org_id: str | None, organization: str | None
) -> Event:
    entry_org = item.get("organizationId", organization)
    if entry_org is not None:
        if not _is_salesforce_id(entry_org):
            raise EventInvalid("organizationId is not a Salesforce id")
        if org_id is not None and not same_salesforce_id(entry_org, org_id):
            raise EventInvalid("organizationId does not match the org configured for this source")
    object_type = _object_type(item.get("object"), "object")
    record_id = _record_id(item.get("id"), "id")
    event_type = _change_type(item.get("type"), "type")
    fields = item.get("fields", {})
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise EventInvalid(f"fields must be a JSON object, got {json_type(fields)}")
    raw_time = item.get("occurredAt")
    occurred_at = _json_time(raw_time, "occurredAt", received_at)
    event_id = item.get("eventId")
    if event_id is not None and not (isinstance(event_id, str) and event_id) and not is_int(event_id):
        raise EventInvalid("eventId must be a non-empty string or an integer")

    properties = dict(fields)
    meta: dict[str, Any] = {"sObjectType": item["object"]}
    if event_id is not None:
        meta["eventId"] = event_id
    if entry_org is not None:
        meta["organizationId"] = entry_org
    properties[META_KEY] = meta
    if event_id is not None:
        dedupe_key = stable_hash("salesforce-flow", entry_org and entry_org[:15], event_id)
    else:
        # Without an event id, the change itself is the identity; receipt time must stay out of it.
        dedupe_key = stable_hash(
            "salesforce-flow",
            entry_org and entry_org[:15],
            object_type,
            record_id[:15],
            event_type,
            occurred_at.isoformat() if raw_time is not None else None,
            fields,
        )
    return _event(
        source, object_type, record_id, event_type, occurred_at, received_at, properties, dedupe_key
    )


def _parse_change_event(
    payload: dict[str, Any], source: str, received_at: datetime, stream: str | None, replay: Any
) -> list[Event]:
    header = payload["ChangeEventHeader"]
    object_type = _object_type(header.get("entityName"), "ChangeEventHeader.entityName")
    change = header.get("changeType")
    if not isinstance(change, str) or not change:
        raise EventInvalid("ChangeEventHeader.changeType is missing")
    if change.upper().startswith("GAP_"):
        raise EventIgnored(f"{clip(change)} event: re-read these records from Salesforce")
    event_type = _change_type(change, "ChangeEventHeader.changeType")
    record_ids = header.get("recordIds")
    if not isinstance(record_ids, list):
        raise EventInvalid("ChangeEventHeader.recordIds must be an array")
    # A wildcard id ("001*") stands for "many records"; it names none we could score.
    ids = [r for r in record_ids if isinstance(r, str) and _is_salesforce_id(r)]
    if not ids:
        raise EventInvalid("ChangeEventHeader.recordIds holds no Salesforce id")
    commit = header.get("commitTimestamp")
    if commit is not None:
        occurred_at = check_occurred_at(
            ms_to_datetime(commit, "commitTimestamp"), received_at, "commitTimestamp"
        )
    else:
        occurred_at = received_at

    fields = _flatten_compound({k: v for k, v in payload.items() if k != "ChangeEventHeader"})
    nulled = header.get("nulledFields")
    if isinstance(nulled, list):
        for name in nulled:
            if isinstance(name, str) and name:
                fields[name.rpartition(".")[2]] = None
    meta = {
        k: header[k]
        for k in (
            "changeType",
            "changeOrigin",
            "commitUser",
            "transactionKey",
            "sequenceNumber",
            "entityName",
        )
        if isinstance(header.get(k), (str, int))
    }
    if isinstance(header.get("changedFields"), list):
        meta["changedFields"] = [f for f in header["changedFields"] if isinstance(f, str)]
    if replay is not None and isinstance(replay, (str, int)):
        meta["replayId"] = replay

    transaction, sequence = header.get("transactionKey"), header.get("sequenceNumber")
    events = []
    for record_id in ids:
        if isinstance(transaction, str) and transaction and (is_int(sequence) or isinstance(sequence, str)):
            key = stable_hash("salesforce-cdc", transaction, sequence, record_id[:15])
        elif stream and isinstance(replay, (str, int)) and not isinstance(replay, bool):
            key = stable_hash("salesforce-cdc", stream, replay, record_id[:15])
        else:
            key = stable_hash("salesforce-cdc", object_type, record_id[:15], event_type, commit, fields)
        properties = dict(fields)
        properties[META_KEY] = dict(meta)
        events.append(
            _event(source, object_type, record_id, event_type, occurred_at, received_at, properties, key)
        )
    return events


def _parse_platform_event(
    payload: dict[str, Any], source: str, received_at: datetime, stream: str | None, replay: Any
) -> Event:
    object_type = _object_type(payload.get("Object__c"), "Object__c")
    record_id = _record_id(payload.get("Record_Id__c"), "Record_Id__c")
    event_type = _change_type(payload.get("Change_Type__c"), "Change_Type__c")
    fields = payload.get("Fields__c")
    if isinstance(fields, str):
        try:
            fields = json.loads(fields, parse_constant=reject_json_constant)
        except (ValueError, RecursionError):
            raise EventInvalid("Fields__c is not valid JSON") from None
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise EventInvalid("Fields__c must hold a JSON object")
    properties = {k: v for k, v in payload.items() if k.endswith("__c") and k not in PLATFORM_EVENT_FIELDS}
    properties.update(fields)
    occurred_at = _json_time(payload.get("CreatedDate"), "CreatedDate", received_at)

    meta: dict[str, Any] = {"sObjectType": payload["Object__c"]}
    for name in ("EventUuid", "CreatedById"):
        if isinstance(payload.get(name), str):
            meta[name] = payload[name]
    if isinstance(replay, (str, int)):
        meta["replayId"] = replay
    properties[META_KEY] = meta
    uuid = payload.get("EventUuid")
    if isinstance(uuid, str) and uuid:
        key = stable_hash("salesforce-pe", uuid)
    elif stream and isinstance(replay, (str, int)) and not isinstance(replay, bool):
        key = stable_hash("salesforce-pe", stream, replay)
    else:
        key = stable_hash(
            "salesforce-pe", object_type, record_id[:15], event_type, payload.get("CreatedDate"), fields
        )
    return _event(source, object_type, record_id, event_type, occurred_at, received_at, properties, key)


def _event(
    source: str,
    object_type: str,
    record_id: str,
    event_type: str,
    occurred_at: datetime,
    received_at: datetime,
    properties: dict[str, Any],
    dedupe_key: str,
    email_keys: tuple[str, ...] = ("Email", "email"),
) -> Event:
    # The first of `email_keys` present wins, even when its value is empty.
    email = next((properties[key] for key in email_keys if key in properties), None)
    return Event(source=source, crm="salesforce", object_type=object_type, object_id=record_id,
                 event_type=event_type, occurred_at=occurred_at, received_at=received_at,
                 properties=properties, dedupe_key=dedupe_key, email=normalize_email(email))


def _object_type(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise EventInvalid(f"{field} is missing")
    object_type = _SOBJECT_BY_LOWER.get(value.lower())
    if object_type is None:
        raise EventIgnored(f"sObject type {clip(value)!r} is not one we score")
    return object_type


def _record_id(value: Any, field: str) -> str:
    if not _is_salesforce_id(value):
        raise EventInvalid(f"{field} is missing or not a Salesforce id")
    return value


def _change_type(value: Any, field: str) -> str:
    if value is None:
        return "property_change"
    event_type = CHANGE_TYPES.get(value.lower()) if isinstance(value, str) else None
    if event_type is None:
        raise EventInvalid(f"{field} must be one of: {', '.join(sorted(CHANGE_TYPES))}")
    return event_type


def _json_time(value: Any, field: str, received_at: datetime) -> datetime:
    if value is None:
        return received_at
    moment = iso_to_datetime(value, field) if isinstance(value, str) else ms_to_datetime(value, field)
    return check_occurred_at(moment, received_at, field)


def _flatten_compound(fields: dict[str, Any]) -> dict[str, Any]:
    # CDC nests compound fields (Name -> FirstName/LastName, Address -> Street/City); the inner keys are
    # the real field names, the same ones an Outbound Message sends flat. A null in a change event means
    # "not changed" (cleared fields are listed in nulledFields instead), so nulls are left out.
    flat: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, dict):
            flat.update({k: v for k, v in value.items() if v is not None})
        elif value is not None:
            flat[name] = value
    return flat


def _xml_char(ch: str) -> bool:
    # The characters XML 1.0 can carry at all; anything else would make the fault itself malformed.
    code = ord(ch)
    return ch in "\t\n\r" or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF
