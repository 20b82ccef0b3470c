"""Recognise our own writes when the CRM echoes them back as webhooks, so they never trigger a re-score loop."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connectors.base import same_field_value
from core.records import Event

OWN_PREFIX = "leadbridge_"  # matches HubSpot leadbridge_* and Salesforce Leadbridge_*__c (case-insensitive)
META_KEY = "_meta"  # delivery metadata the bridge parsers keep in Event.properties
# Fields the platform changes on every write; they say nothing about who changed what.
AUDIT_FIELDS = frozenset({"id", "lastmodifieddate", "systemmodstamp", "lastmodifiedbyid", "createddate",
                          "hs_lastmodifieddate", "lastmodified", "hs_object_id", "hs_updated_by_user_id",
                          "lastvieweddate", "lastreferenceddate"})


def is_own_field(name: str, prefix: str = OWN_PREFIX) -> bool:
    """True for a field leadbridge writes (leadbridge_score, Leadbridge_Score__c ...)."""
    return name.lower().startswith(prefix.lower())


def changed_fields_are_ours(changed: Iterable[str], prefix: str = OWN_PREFIX) -> bool:
    """True when every changed field that matters is one of ours (an empty change counts as ours)."""
    relevant = [n for n in changed if n != META_KEY and n.lower() not in AUDIT_FIELDS]
    return all(is_own_field(n, prefix) for n in relevant)


def is_own_echo(event: Event, previous: Mapping[str, Any] | None = None, prefix: str = OWN_PREFIX) -> bool:
    """Say whether a webhook event is only our own write coming back.

    HubSpot property changes name the one property that changed: ours if it is a leadbridge_* property.
    Salesforce Outbound Messages carry the whole record, not what changed, so pass `previous` (the values
    last seen for that record): the event is ours when every field that differs from it is one of ours.
    Without `previous`, a Salesforce event counts as ours only when it carries nothing but our fields
    (a Flow callout sending the changed fields). Creations, deletions and merges are never echoes.
    """
    if event.event_type != "property_change":
        return False
    props = {k: v for k, v in event.properties.items() if k != META_KEY}
    if event.crm == "salesforce" and previous is not None:
        prev = {k.lower(): v for k, v in previous.items()}
        changed = [k for k, v in props.items() if k.lower() not in AUDIT_FIELDS and not same_field_value(v, prev.get(k.lower()))]
        return changed_fields_are_ours(changed, prefix)
    if not any(k.lower() not in AUDIT_FIELDS for k in props):
        return False  # an event naming no field tells us nothing; let ingest look at it
    return changed_fields_are_ours(props, prefix)


def is_own_hubspot_event(event: Mapping[str, Any], prefix: str = OWN_PREFIX) -> bool:
    """The same test on a raw HubSpot webhook event (before it became a canonical Event)."""
    return (str(event.get("subscriptionType", "")).endswith(".propertyChange")
            and is_own_field(str(event.get("propertyName", "")), prefix))
