"""HubSpot activity of contacts for the pilot KPIs: engagements, lifecycle and lead-status history, deals.

Reads, per batch of contact ids: the contacts with their lifecycle stage and lead status history
(propertiesWithHistory, 50 a call), the contact -> call/email/meeting/note/task/deal associations (v4 batch
read, 100 a call per type), and those activities and deals (v3 batch read, 100 a call). Every call goes through
the connector's shared rate limit and retry.

An activity whose `hs_created_by_user_id` is the private app's user (the connector's `integration_user_id`) is
leadbridge's own (a task it assigned, a sequence e-mail) and is flagged, never counted as a touch; so is a lead
status change whose history entry names that user. An incoming e-mail is the lead writing, not a touch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import ActivityBuilder, amount_of
from connectors.base import parse_time as _time
from core.records import LeadActivity, Opportunity

# HubSpot activity object -> the touch kind it records.
ENGAGEMENTS = {"calls": "call", "emails": "email", "meetings": "meeting", "notes": "note", "tasks": "task"}
ENGAGEMENT_PROPERTIES = ["hs_timestamp", "hubspot_owner_id", "hs_created_by_user_id", "hs_email_direction"]
NOT_TOUCHES = {("emails", "hs_email_direction"): "INCOMING_EMAIL"}
# Contact properties whose history is the stage history, and their canonical names (core.records.STAGE_FIELDS).
STAGE_PROPERTIES = {"lifecyclestage": "lifecycle_stage", "hs_lead_status": "lead_status"}
STATUS_PROPERTY = "hs_lead_status"  # a rep changing it is a touch
DEAL_PROPERTIES = ["amount", "dealstage", "closedate", "createdate", "hs_is_closed", "hs_is_closed_won"]
# What counts as sales qualified by default: the lifecycle stages from SQL on, or a lead status saying a deal is
# open. A portal with its own lead statuses sets its own (the connector's `sql_rules`).
SQL_RULES: Mapping[str, tuple[str, ...]] = {"lifecycle_stage": ("salesqualifiedlead", "opportunity", "customer"),
                                            "lead_status": ("OPEN_DEAL",)}


def _is_true(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def read_activity(connector: Any, ids: Sequence[str]) -> dict[str, LeadActivity]:
    """LeadActivity per contact id among `ids` that HubSpot knows (touches, stage history, deals)."""
    wanted = list(dict.fromkeys(str(i) for i in ids))
    if not wanted:
        return {}
    contacts = {str(c["id"]): c for c in connector.read_objects(
        "contacts", wanted, ["createdate", "hubspot_owner_id", *STAGE_PROPERTIES], history=list(STAGE_PROPERTIES))}
    found = [i for i in wanted if i in contacts]
    builder = ActivityBuilder(connector.integration_user_id)
    for cid in found:
        _stage_history(builder, cid, contacts[cid])
    for object_type, kind in ENGAGEMENTS.items():
        _engagements(connector, builder, found, object_type, kind)
    _deals(connector, builder, found)
    out = {}
    for cid in found:
        props = contacts[cid].get("properties") or {}
        created = _time(props.get("createdate")) or _time(contacts[cid].get("createdAt"))
        out[cid] = builder.build(cid, created, props.get("hubspot_owner_id"))
    return out


def _stage_history(builder: ActivityBuilder, cid: str, contact: Mapping[str, Any]) -> None:
    """The lifecycle stage and lead status values over time; a lead status set after creation is a touch too."""
    created = _time((contact.get("properties") or {}).get("createdate")) or _time(contact.get("createdAt"))
    for name, entries in (contact.get("propertiesWithHistory") or {}).items():
        canonical = STAGE_PROPERTIES.get(name)
        if canonical is None:
            continue
        for entry in entries or []:
            at = _time(entry.get("timestamp"))
            builder.stage(cid, at, canonical, entry.get("value"))
            # The value a contact was created with is where it started, not something a rep did.
            if name == STATUS_PROPERTY and at is not None and entry.get("value") and (created is None or at > created):
                builder.touch(cid, at, "status_change", entry.get("updatedByUserId"), entry.get("updatedByUserId"))


def _engagements(connector: Any, builder: ActivityBuilder, contact_ids: list[str], object_type: str,
                 kind: str) -> None:
    links = connector.associated_ids("contact", object_type, contact_ids)
    records = {str(r["id"]): r.get("properties") or {} for r in connector.read_objects(
        object_type, sorted({e for ids in links.values() for e in ids}), ENGAGEMENT_PROPERTIES)} if links else {}
    for cid, engagement_ids in links.items():
        for eid in engagement_ids:
            props = records.get(eid)
            if props is None or any(object_type == t and props.get(p) == v for (t, p), v in NOT_TOUCHES.items()):
                continue
            builder.touch(cid, _time(props.get("hs_timestamp")), kind, props.get("hubspot_owner_id"),
                          props.get("hs_created_by_user_id"))


def _deals(connector: Any, builder: ActivityBuilder, contact_ids: list[str]) -> None:
    links = connector.associated_ids("contact", "deals", contact_ids)
    deals = {str(r["id"]): r for r in connector.read_objects(
        "deals", sorted({d for ids in links.values() for d in ids}), DEAL_PROPERTIES)} if links else {}
    for cid, deal_ids in links.items():
        for did in deal_ids:
            deal = deals.get(did)
            if deal is None:
                continue
            p = deal.get("properties") or {}
            closed = _is_true(p.get("hs_is_closed"))
            builder.opportunity(cid, Opportunity(
                did, _time(p.get("createdate")) or _time(deal.get("createdAt")), amount_of(p.get("amount")),
                _time(p.get("closedate")) if closed else None, _is_true(p.get("hs_is_closed_won")) if closed else None))
