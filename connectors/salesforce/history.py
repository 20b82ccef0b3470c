"""Salesforce history for a backfill: every Account, Lead, Contact and Opportunity, and each Contact's Account."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from connectors.base import CrmRecord, History, Progress, SilentProgress, filled_traits

KEY_CODE = "sf"  # in backfill dedupe keys (bf:sf:...): short, so the longest key fits in 64 characters
FIELDS = {
    "Lead": ["FirstName", "LastName", "Email", "Title", "Company", "Industry", "NumberOfEmployees", "Country",
             "Website", "LeadSource", "Status", "IsConverted", "ConvertedDate", "ConvertedAccountId",
             "ConvertedContactId", "ConvertedOpportunityId"],
    "Contact": ["FirstName", "LastName", "Email", "Title", "MailingCountry", "LeadSource", "AccountId"],
    "Account": ["Name", "Website", "Industry", "NumberOfEmployees", "BillingCountry"],
    "Opportunity": ["Name", "StageName", "IsClosed", "IsWon", "CloseDate", "Amount", "AccountId", "ContactId"],
}
# Fields that describe where a record stands now, not what it was when created (see tasks.backfill).
STATE_FIELDS = frozenset({"Status", "IsConverted", "ConvertedDate", "ConvertedAccountId", "ConvertedContactId",
                          "ConvertedOpportunityId", "StageName", "IsClosed", "IsWon", "CloseDate", "Amount"})
# Fields that change on every write (ours included) and say nothing about the record.
VOLATILE_FIELDS = frozenset({"CreatedDate", "LastModifiedDate", "SystemModstamp", "Id"})


def fetch(connector: Any, progress: Progress | None = None,
          mapped: Mapping[str, Sequence[str]] | None = None) -> History:
    """SOQL through every Account, Lead, Contact and Opportunity, and read converted/closed outcomes.

    `mapped["Lead"]` / `mapped["Contact"]`: fields mapped to features, selected too (those the org has). Those
    the org tracks (Field History Tracking: the LeadHistory / ContactHistory describe) are read with their
    history, so each value enters training at the time it was set (`with_field_history`); any other value is
    known only as of its record's LastModifiedDate, and tasks.backfill reports what that costs training.
    """
    progress = progress or SilentProgress()
    history = History("salesforce")
    for sobject in ("Account", "Lead", "Contact", "Opportunity"):
        stage = sobject.lower() + "s"
        progress.stage(stage)
        asked = list((mapped or {}).get(sobject) or ())
        present = connector.existing_fields(sobject, asked) if asked else {}
        fields = list(dict.fromkeys([*FIELDS[sobject], *present.values()]))
        start = len(history.records)
        records = history.drain(connector.iter_records(sobject, fields), stage, progress)
        if sobject in HISTORY_OBJECTS and present and records:
            tracked = list(dict.fromkeys(connector.tracked_fields(sobject, list(present.values())).values()))
            if tracked:
                rows = connector.field_history(sobject, [r.id for r in records], tracked)
                history.records[start:] = with_field_history(records, tracked, rows)
    history.outcomes = connector.read_outcomes()
    return history


HISTORY_OBJECTS = ("Lead", "Contact")  # objects whose tracked fields fetch reads with their history


def with_field_history(records: Sequence[CrmRecord], tracked: Sequence[str],
                       rows: Mapping[str, Sequence[tuple[str, datetime, Any, Any]]]) -> list[CrmRecord]:
    """The records with each tracked field's values and when each was set, where the History rows tell.

    Salesforce records a field's changes only from when tracking was turned on for it (and keeps them 18-24
    months), and no row says when that was. The oldest row of a field among all records bounds it: tracking
    was on by then. So for a record created after that bound, the value before its first change (OldValue)
    held since the CreatedDate, and a field with no rows kept its value since then. For an older record, the
    first OldValue holds from the bound on, and a field with no rows is left untracked: known only as of the
    LastModifiedDate, as if not tracked (never backdated). A field with no rows at all, or whose rows carry no
    values (a long text area), is untracked too. Cleared values are "" (as HubSpot's history shows them).
    """
    since: dict[str, datetime] = {}
    unrecorded: set[tuple[str, str]] = set()
    for rid, changes in rows.items():
        for name, when, old, new in changes:
            since[name] = min(since.get(name, when), when)
            if old is None and new is None:
                unrecorded.add((rid, name))
    out = []
    for record in records:
        changes = rows.get(record.id[:15], ())
        values: dict[str, tuple[tuple[datetime, Any], ...]] = {}
        for name in tracked:
            bound = since.get(name)
            if bound is None or (record.id[:15], name) in unrecorded:
                continue
            mine = [(when, old, new) for field, when, old, new in changes if field == name]
            covered = record.created_at is not None and record.created_at >= bound
            if not mine:
                if covered:
                    value = record.properties.get(name)
                    values[name] = () if value is None else ((record.created_at, value),)  # type: ignore[arg-type]
                continue
            first_when, first_old = mine[0][0], mine[0][1]
            start = record.created_at if covered else bound
            entries: list[tuple[datetime, Any]] = []
            if first_old is not None and start is not None and start < first_when:
                entries.append((start, first_old))
            entries.extend((when, "" if new is None else new) for when, _old, new in mine)
            values[name] = tuple(entries)
        out.append(replace(record, history=values) if values else record)
    return out


def company_of(record: CrmRecord, by_id: dict[tuple[str, str], CrmRecord]) -> CrmRecord | None:
    """The Account a Contact belongs to, if fetched (a Lead carries its company's fields itself)."""
    return record.linked("account", by_id) if record.object_type == "contact" else None


def company_traits(company: CrmRecord) -> dict[str, Any]:
    """The firmographics a Contact gets from its Account, as identify traits."""
    p = company.properties
    return filled_traits({"company": p.get("Name"), "website": p.get("Website"),
                          "industry": p.get("Industry"), "numberofemployees": p.get("NumberOfEmployees"),
                          "country": p.get("BillingCountry"), "accountid": company.id})

