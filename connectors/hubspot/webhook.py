"""HubSpot webhook deliveries -> canonical Events.

Accepts the body HubSpot POSTs to an app's target URL: a JSON array of at most 100 event objects
(https://developers.hubspot.com/docs/api/webhooks, and vendors/HUBSPOT.md §5 in the team's notes):

    [{"eventId": 100002, "subscriptionId": 2002, "portalId": 62515, "appId": 54321,
      "occurredAt": 1717430401000, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
      "objectId": 101, "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead",
      "changeSource": "CRM_UI", "sourceId": "userId:45678"}, ...]

Subscription types, in the legacy `<object>.<action>` form for contact, company and deal, and in the
generic `object.<action>` form with `objectTypeId` 0-1/0-2/0-3
(https://developers.hubspot.com/changelog/public-beta-generic-webhook-subscriptions):
creation, deletion, propertyChange, merge, associationChange, restore, and contact.privacyDeletion.
Merge and association fields follow
https://developers.hubspot.com/changelog/new-subscription-types-for-webhooks.
Other objects (tickets, line items...) and other subscriptions are reported as ignored, not invalid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.parsing.common import (META_KEY, BatchBuilder, EventIgnored, EventInvalid, as_utc,
                                       check_batch_size, check_occurred_at, clip, is_int, json_type,
                                       load_json, ms_to_datetime, normalize_email, stable_hash,
                                       time_ordered_key)
from connectors.parsing.errors import MalformedPayload
from connectors.parsing.results import ParseResult
from core.records import Event

MAX_EVENTS = 100  # HubSpot sends at most 100 events per request

LEGACY_OBJECTS = {"contact": "contact", "company": "company", "deal": "deal"}
OBJECT_TYPE_IDS = {"0-1": "contact", "0-2": "company", "0-3": "deal"}
# HubSpot action (lower-cased) -> canonical event type
ACTIONS = {
    "creation": "created",
    "deletion": "deleted",
    "propertychange": "property_change",
    "privacydeletion": "privacy_deletion",
    "merge": "merged",
    "associationchange": "association_change",
    "restore": "restored",
}
# Delivery metadata kept under properties["_meta"]: ingest needs changeSource/sourceId/appId to
# recognise the echoes of our own writes, and eventId/attemptNumber help when tracing a delivery.
META_FIELDS = (
    "eventId",
    "subscriptionId",
    "appId",
    "portalId",
    "attemptNumber",
    "changeSource",
    "sourceId",
    "changeFlag",
    "subscriptionType",
    "objectTypeId",
)


def parse_hubspot(body: bytes, *, source: str, received_at: datetime, portal_id: int | None) -> ParseResult:
    """Parse a HubSpot webhook batch; events from another portal than `portal_id` are reported invalid.

    Raises:
        MalformedPayload: the body is not JSON, not an array, or holds more than 100 events.
    """
    received_at = as_utc(received_at)
    if isinstance(portal_id, str) and portal_id.strip().isdigit():
        portal_id = int(portal_id)  # a portal id read from a text column still has to match
    payload = load_json(body)
    if not isinstance(payload, list):
        raise MalformedPayload(
            f"expected a JSON array of HubSpot events, got {json_type(payload)}", code="wrong_shape"
        )
    check_batch_size(len(payload), MAX_EVENTS)
    batch = BatchBuilder(source)
    for index, item in enumerate(payload):
        batch.run(index, lambda item=item: [_parse_event(item, source, received_at, portal_id)])
    return batch.result


def _parse_event(item: Any, source: str, received_at: datetime, portal_id: int | None) -> Event:
    if not isinstance(item, dict):
        raise EventInvalid(f"event must be a JSON object, got {json_type(item)}")
    subscription = item.get("subscriptionType")
    if not isinstance(subscription, str) or "." not in subscription:
        raise EventInvalid("subscriptionType is missing or not of the form <object>.<action>")
    prefix, _, action_name = subscription.partition(".")
    event_type = ACTIONS.get(action_name.lower())
    if event_type is None:
        raise EventIgnored(f"subscription type {clip(subscription)!r} is not one we use")

    portal = _int_field(item, "portalId", required=True)
    if portal_id is not None and portal != portal_id:
        raise EventInvalid("portalId does not match the portal configured for this source")

    object_type = _object_type(item, prefix.lower(), event_type, subscription)
    if event_type == "privacy_deletion" and object_type != "contact":
        raise EventIgnored(f"subscription type {clip(subscription)!r} is not one we use")

    object_id = _object_id(item, event_type)
    occurred_at = ms_to_datetime(item.get("occurredAt"), "occurredAt")
    occurred_at = check_occurred_at(occurred_at, received_at, "occurredAt")

    properties: dict[str, Any] = {}
    email: str | None = None
    property_name: str | None = None
    key_extra: Any = None
    if event_type == "property_change":
        property_name = item.get("propertyName")
        if not isinstance(property_name, str) or not property_name:
            raise EventInvalid("propertyName is missing on a propertyChange event")
        value = _property_value(item.get("propertyValue"))
        properties[property_name] = value
        # Two changes of one property in the same millisecond are two events (found by bench/e2e: senders
        # changing the same contacts at once lost a few to the dedupe); a redelivery repeats the value too.
        key_extra = value
        if property_name.lower() == "email":
            email = normalize_email(value)
    elif event_type == "merged":
        properties.update(_merge_fields(item))
        key_extra = sorted(properties.get("mergedObjectIds", []))
    elif event_type == "association_change":
        properties.update(_association_fields(item))
        key_extra = [
            properties.get("associationType"),
            properties.get("associationTypeId"),
            properties.get("toObjectId"),
            properties.get("associationRemoved"),
        ]

    properties[META_KEY] = {k: v for k in META_FIELDS if type(v := item.get(k)) in _SCALARS}
    # HubSpot's eventId is not unique, so the key is built from what identifies the change itself.
    # The subscription type enters as (object_type, event_type) so that the legacy and the generic
    # subscription for the same change share one key. It leads with the event time (time_ordered_key).
    dedupe_key = time_ordered_key(occurred_at, stable_hash(
        "hubspot",
        portal,
        object_type,
        object_id,
        event_type,
        property_name,
        occurred_at.isoformat(),
        key_extra,
    ))
    return Event(source=source, crm="hubspot", object_type=object_type, object_id=object_id,
                 event_type=event_type, occurred_at=occurred_at, received_at=received_at,
                 properties=properties, dedupe_key=dedupe_key, email=email)


def _object_type(item: dict[str, Any], prefix: str, event_type: str, subscription: str) -> str:
    if prefix in LEGACY_OBJECTS:
        return LEGACY_OBJECTS[prefix]
    if prefix != "object":
        raise EventIgnored(f"subscription type {clip(subscription)!r} is not one we use")
    type_id = item.get("objectTypeId")
    if type_id is None and event_type == "association_change":
        # Generic association events may name the side through fromObjectTypeId or associationType.
        type_id = item.get("fromObjectTypeId")
        if type_id is None and isinstance(item.get("associationType"), str):
            side = item["associationType"].split("_TO_", 1)[0].lower()
            if side in LEGACY_OBJECTS:
                return LEGACY_OBJECTS[side]
    if not isinstance(type_id, str) or not type_id:
        raise EventInvalid("objectTypeId is missing on a generic object.* event")
    if type_id not in OBJECT_TYPE_IDS:
        raise EventIgnored(f"objectTypeId {clip(type_id)!r} is not a contact, company or deal")
    return OBJECT_TYPE_IDS[type_id]


def _object_id(item: dict[str, Any], event_type: str) -> str:
    # Association events may carry only fromObjectId; merge events name the surviving record.
    fallbacks = {"association_change": ("fromObjectId",), "merged": ("newObjectId", "primaryObjectId")}
    for name in ("objectId", *fallbacks.get(event_type, ())):
        if item.get(name) is not None:
            return str(_int_field(item, name, required=True))
    raise EventInvalid("objectId is missing")


def _int_field(item: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = item.get(name)
    if value is None:
        if required:
            raise EventInvalid(f"{name} is missing")
        return None
    if is_int(value):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)  # ids are numbers here but strings in the REST API; accept both
    else:
        raise EventInvalid(f"{name} must be an integer")
    if number < 0 or number >= 2**63:
        raise EventInvalid(f"{name} is out of range")
    return number


def _property_value(value: Any) -> str | None:
    # HubSpot always sends the value as a string; normalise the odd number or boolean to match.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise EventInvalid("propertyValue must be a string")


def _merge_fields(item: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("primaryObjectId", "newObjectId", "numberOfPropertiesMoved"):
        value = _int_field(item, name, required=False)
        if value is not None:
            fields[name] = value
    merged = item.get("mergedObjectIds")
    if merged is not None:
        if not isinstance(merged, list) or not all(is_int(v) and 0 <= v < 2**63 for v in merged):
            raise EventInvalid("mergedObjectIds must be a list of integers")
        fields["mergedObjectIds"] = list(merged)
    return fields


def _association_fields(item: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("fromObjectId", "toObjectId", "associationTypeId"):
        value = _int_field(item, name, required=name == "toObjectId")
        if value is not None:
            fields[name] = value
    for name in ("associationType", "associationCategory", "fromObjectTypeId", "toObjectTypeId"):
        value = item.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise EventInvalid(f"{name} must be a string")
            fields[name] = value
    for name in ("associationRemoved", "isPrimaryAssociation"):
        value = item.get(name)
        if value is not None:
            if not isinstance(value, bool):
                raise EventInvalid(f"{name} must be true or false")
            fields[name] = value
    return fields


_SCALARS = frozenset((str, int, float, bool))  # exact types: what json.loads produces
