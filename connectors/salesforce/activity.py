"""Salesforce activity of Leads and Contacts for the pilot KPIs: Tasks and Events, Lead Status history, Opportunities.

All reads are SOQL with the ids in IN lists of at most 200 (each page one API call, following nextRecordsUrl):
the Leads/Contacts themselves (owner, creation, converted opportunity), their Tasks and Events (WhoId), the
Lead Status rows of LeadHistory (only an org that tracks Lead Status has them), the Contacts' opportunities
through OpportunityContactRole, those Opportunities and their OpportunityHistory (stage over time).

A Task or Event whose CreatedById is the API user (the connector's `integration_user_id`, by default the
session's own user from /services/oauth2/userinfo) is leadbridge's own and is flagged; so is a Status change
that user made. Salesforce keys are compared on their first 15 characters (Salesforce answers with 18).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.base import ActivityBuilder, amount_of
from connectors.base import parse_time as _time
from core.records import LeadActivity, Opportunity

ID_CHUNK = 200  # ids per IN (...) list
TASK_KINDS = {"call": "call", "email": "email", "listemail": "email", "linkedin": "email"}  # TaskSubtype / Type
# Lead Status values that mean sales qualified: an org names its own (the connector's `sql_rules`); "Working -
# Contacted" is a rep at work, not a qualified lead.
SQL_RULES: Mapping[str, tuple[str, ...]] = {"lead_status": ("Qualified", "Closed - Converted")}


def _quoted(ids: Sequence[str]) -> str:
    return ", ".join("'" + i.replace("\\", "\\\\").replace("'", "\\'") + "'" for i in ids)


def _rows(connector: Any, select: str, where_field: str, ids: Sequence[str], action: str,
          tail: str = "") -> Iterator[dict[str, Any]]:
    """The rows of `select ... WHERE where_field IN (ids)`, 200 ids a query."""
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        yield from connector.query_all(f"{select} WHERE {where_field} IN ({_quoted(chunk)}){tail}", action)


def read_activity(connector: Any, ids: Sequence[str]) -> dict[str, LeadActivity]:
    """LeadActivity per Lead (00Q) or Contact (003) id among `ids` that the org holds."""
    by_short = {str(i)[:15]: str(i) for i in ids if str(i)[:3] in ("00Q", "003")}
    leads = [i for i in by_short.values() if i.startswith("00Q")]
    contacts = [i for i in by_short.values() if i.startswith("003")]
    people: dict[str, dict[str, Any]] = {}
    for rec in _rows(connector, "SELECT Id, OwnerId, CreatedDate, Status, ConvertedOpportunityId FROM Lead", "Id",
                     leads, "read leads' activity"):
        people[by_short[str(rec["Id"])[:15]]] = rec
    for rec in _rows(connector, "SELECT Id, OwnerId, CreatedDate FROM Contact", "Id", contacts,
                     "read contacts' activity"):
        people[by_short[str(rec["Id"])[:15]]] = rec
    found = [i for i in by_short.values() if i in people]
    if not found:
        return {}
    builder = ActivityBuilder(connector.api_user_id())
    _tasks_and_events(connector, builder, found, by_short)
    _status_history(connector, builder, [i for i in found if i.startswith("00Q")], by_short)
    _opportunities(connector, builder, found, people, by_short)
    return {i: builder.build(i, _time(people[i].get("CreatedDate")), people[i].get("OwnerId")) for i in found}


def _task_kind(rec: Mapping[str, Any]) -> str:
    subtype = str(rec.get("TaskSubtype") or rec.get("Type") or "").lower()
    return TASK_KINDS.get(subtype, "task")


def _tasks_and_events(connector: Any, builder: ActivityBuilder, found: list[str], by_short: dict[str, str]) -> None:
    """Tasks count when logged (completed: CompletedDateTime, else CreatedDate); Events at their start."""
    for rec in _rows(connector, "SELECT Id, WhoId, OwnerId, CreatedById, CreatedDate, CompletedDateTime, "
                                "TaskSubtype, Type FROM Task", "WhoId", found, "read tasks"):
        who = by_short.get(str(rec.get("WhoId"))[:15])
        if who is not None:
            builder.touch(who, _time(rec.get("CompletedDateTime")) or _time(rec.get("CreatedDate")), _task_kind(rec),
                          rec.get("OwnerId"), rec.get("CreatedById"))
    for rec in _rows(connector, "SELECT Id, WhoId, OwnerId, CreatedById, ActivityDateTime FROM Event", "WhoId",
                     found, "read events"):
        who = by_short.get(str(rec.get("WhoId"))[:15])
        if who is not None:
            builder.touch(who, _time(rec.get("ActivityDateTime")), "meeting", rec.get("OwnerId"),
                          rec.get("CreatedById"))


def _status_history(connector: Any, builder: ActivityBuilder, leads: list[str], by_short: dict[str, str]) -> None:
    """Each Lead Status change: a stage, and a touch by whoever made it."""
    for rec in _rows(connector, "SELECT LeadId, NewValue, CreatedById, CreatedDate FROM LeadHistory", "LeadId", leads,
                     "read lead status history", " AND Field = 'Status' ORDER BY CreatedDate"):
        lead = by_short.get(str(rec.get("LeadId"))[:15])
        if lead is None:
            continue
        at = _time(rec.get("CreatedDate"))
        builder.stage(lead, at, "lead_status", rec.get("NewValue"))
        builder.touch(lead, at, "status_change", rec.get("CreatedById"), rec.get("CreatedById"))


def _opportunities(connector: Any, builder: ActivityBuilder, found: list[str], people: Mapping[str, Mapping[str, Any]],
                   by_short: dict[str, str]) -> None:
    """A Lead's converted opportunity, a Contact's through its contact roles; with each one's stage history."""
    on: dict[str, set[str]] = {}  # opportunity id (15) -> the people on it
    for pid in found:
        converted = people[pid].get("ConvertedOpportunityId")
        if converted:
            on.setdefault(str(converted)[:15], set()).add(pid)
    contacts = [i for i in found if i.startswith("003")]
    for rec in _rows(connector, "SELECT OpportunityId, ContactId FROM OpportunityContactRole", "ContactId", contacts,
                     "read opportunity contact roles"):
        person = by_short.get(str(rec.get("ContactId"))[:15])
        if person is not None and rec.get("OpportunityId"):
            on.setdefault(str(rec["OpportunityId"])[:15], set()).add(person)
    opportunity_ids = sorted(on)
    for rec in _rows(connector, "SELECT Id, Amount, IsClosed, IsWon, CloseDate, CreatedDate FROM Opportunity", "Id",
                     opportunity_ids, "read opportunities"):
        closed = rec.get("IsClosed") is True
        opportunity = Opportunity(str(rec["Id"]), _time(rec.get("CreatedDate")), amount_of(rec.get("Amount")),
                                  _time(rec.get("CloseDate")) if closed else None,
                                  bool(rec.get("IsWon")) if closed else None)
        for person in on.get(str(rec["Id"])[:15], ()):
            builder.opportunity(person, opportunity)
    for rec in _rows(connector, "SELECT OpportunityId, StageName, CreatedDate FROM OpportunityHistory",
                     "OpportunityId", opportunity_ids, "read opportunity stage history", " ORDER BY CreatedDate"):
        for person in on.get(str(rec.get("OpportunityId"))[:15], ()):
            builder.stage(person, _time(rec.get("CreatedDate")), "opportunity_stage", rec.get("StageName"))
