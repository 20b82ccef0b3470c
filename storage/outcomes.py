"""Outcomes in the database, and the stored events, outcomes and scores that labels and training read.

- `record_outcomes`: won/lost records keyed by CRM id (read from a connector, or reported by webhook
  events under each CRM's rules in connectors/<crm>/outcomes.py) -> `outcomes` rows.
- `association_events`: stored association changes (a HubSpot deal's contacts) for those rules.
- `load_events`, `stored_outcomes`, `score_history` ...: what scoring.dataset turns into labels, training
  frames and prequential metrics: the stored inbox events mapped to our lead ids (plus the CRM
  enrichment the online store was given), the recorded outcomes and each lead's score history.
Outcome rows are unique per (lead, source, occurred_at): recording the same outcome twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.records import Event, StoredEvents, utcnow
from core.records import Outcome as OutcomeRecord
from storage.inbox import to_event
from storage.leads import crm_values_event, stored_crm_values
from storage.models import Account, InboxEvent, Lead, LeadCrmId, Outcome, ScoreHistory


@dataclass
class RecordResult:
    """What recording a batch of outcomes did."""

    recorded: int = 0
    duplicates: int = 0
    unknown_leads: int = 0
    unresolved_deals: list[str] = field(default_factory=list)

# ---- recording ----------------------------------------------------------------------------------


def _insert_outcomes(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert outcome rows, skipping those already there; returns how many were new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    seen: set[tuple[Any, ...]] = set()
    unique = []
    for row in rows:
        key = (row["lead_id"], row["source"], row["occurred_at"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    statement = insert(Outcome).values(unique).on_conflict_do_nothing(
        index_elements=["lead_id", "source", "occurred_at"]).returning(Outcome.id)
    return len(session.execute(statement).all())


def _row(lead_id: int, won: bool, occurred_at: datetime, source: str, detail: str) -> dict[str, Any]:
    return {"lead_id": lead_id, "won": bool(won), "occurred_at": occurred_at, "source": source[:40],
            "detail": (detail or "")[:200] or None, "created_at": utcnow()}


def leads_by_crm_id(session: Session, crm: str, ids: Iterable[str]) -> dict[str, int]:
    """CRM record id -> our lead id (Salesforce ids match on their 15-character form)."""
    wanted = sorted({str(i) for i in ids if i})
    out: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        if crm == "hubspot":
            query = select(LeadCrmId.lead_id, LeadCrmId.object_id).where(LeadCrmId.crm == crm,
                                                                         LeadCrmId.object_id.in_(chunk))
            for lead_id, hid in session.execute(query):
                out[hid] = lead_id
        elif crm == "salesforce":
            prefixes = sorted({i[:15] for i in chunk})
            query = select(LeadCrmId.lead_id, LeadCrmId.object_id).where(
                LeadCrmId.crm == crm, func.substr(LeadCrmId.object_id, 1, 15).in_(prefixes))
            by_prefix = {sid[:15]: lead_id for lead_id, sid in session.execute(query)}
            for crm_id in chunk:
                if crm_id[:15] in by_prefix:
                    out[crm_id] = by_prefix[crm_id[:15]]
        else:
            raise ValueError(f"unknown CRM {crm!r}")
    return out


def record_outcomes(session: Session, crm: str, outcomes: Sequence[OutcomeRecord]) -> RecordResult:
    """Store outcomes read from a CRM (Outcome.lead_id is the CRM's record id); unknown people are skipped."""
    result = RecordResult()
    mapping = leads_by_crm_id(session, crm, [o.lead_id for o in outcomes])
    rows = []
    for outcome in outcomes:
        lead_id = mapping.get(outcome.lead_id)
        if lead_id is None:
            result.unknown_leads += 1
            continue
        rows.append(_row(lead_id, outcome.won, outcome.occurred_at, outcome.source or crm, outcome.detail))
    result.recorded = _insert_outcomes(session, rows)
    result.duplicates = len(rows) - result.recorded
    return result


def association_events(session: Session, crm: str, object_type: str, ids: Sequence[str]) -> list[Event]:
    """The stored association-change events of some records (e.g. HubSpot deal -> contact), oldest first."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    rows = session.scalars(
        select(InboxEvent).where(InboxEvent.crm == crm, InboxEvent.object_type == object_type,
                                 InboxEvent.event_type == "association_change", InboxEvent.object_id.in_(wanted))
        .order_by(InboxEvent.occurred_at, InboxEvent.id))
    return [to_event(row) for row in rows]


# ---- events and histories -------------------------------------------------------------------------


class LeadResolver:
    """Maps stored events to our lead ids the way ingest resolved them: CRM id first, then e-mail."""

    COLUMNS: ClassVar[dict[tuple[str, str], str]] = {("hubspot", "contact"): "hubspot", ("salesforce", "lead"): "salesforce",
               ("salesforce", "contact"): "salesforce", ("web", "person"): "external"}

    def __init__(self, session: Session) -> None:
        self.ids: dict[str, dict[str, int]] = {"hubspot": {}, "salesforce": {}, "external": {}}
        self.emails: dict[str, int] = {}
        self.created: dict[int, datetime] = {}
        for lead_id, crm, object_id in session.execute(
                select(LeadCrmId.lead_id, LeadCrmId.crm, LeadCrmId.object_id).order_by(LeadCrmId.id)):
            if crm in self.ids:
                self.ids[crm][object_id[:15] if crm == "salesforce" else object_id] = lead_id
        query = select(Lead.id, Lead.external_id, Lead.email, Lead.created_at)
        for lead_id, xid, email, created in session.execute(query.order_by(Lead.id)):
            if xid:
                self.ids["external"][xid] = lead_id
            if email and email not in self.emails:
                self.emails[email] = lead_id
            self.created[lead_id] = created

    def lead_of(self, crm: str, object_type: str, object_id: str, email: str | None) -> int | None:
        """Our lead id for an event's (crm, object type, id, e-mail), or None when it is not about a lead."""
        column = self.COLUMNS.get((crm, object_type))
        if column is None:
            return None
        key = object_id[:15] if column == "salesforce" else object_id
        found = self.ids[column].get(key)
        if found is None and email:
            found = self.emails.get(email.strip().lower())
        return found


def load_events(session: Session, activity_types: Collection[str], *, until: datetime | None = None,
                since: datetime | None = None, progress: Callable[[int], None] | None = None) -> StoredEvents:
    """Processed inbox events about leads (plus each lead's CRM enrichment), mapped to lead ids.

    Each lead's activity times are those of its events whose type is in `activity_types`.
    """
    resolver = LeadResolver(session)
    query = select(InboxEvent).where(InboxEvent.status == "done")
    if until is not None:
        query = query.where(InboxEvent.occurred_at <= until)
    if since is not None:
        query = query.where(InboxEvent.occurred_at >= since)
    events: list[Event] = []
    lead_ids: dict[str, str] = {}
    first_seen: dict[str, datetime] = {}
    activity: dict[str, list[datetime]] = {}
    count = 0
    for row in session.scalars(query.order_by(InboxEvent.occurred_at, InboxEvent.id).execution_options(yield_per=2000)):
        count += 1
        if progress is not None and count % 2000 == 0:
            progress(2000)
        lead = resolver.lead_of(row.crm, row.object_type, row.object_id, row.email)
        if lead is None:
            continue
        event = to_event(row)
        key = str(lead)
        events.append(event)
        lead_ids[event.dedupe_key] = key
        if key not in first_seen or event.occurred_at < first_seen[key]:
            first_seen[key] = event.occurred_at
        if event.event_type in activity_types:
            activity.setdefault(key, []).append(event.occurred_at)
    if progress is not None:
        progress(count % 2000)
    for event, key in _enrichment_events(session):
        if until is None or event.occurred_at <= until:
            events.append(event)
            lead_ids[event.dedupe_key] = key
    for lead_id, created in resolver.created.items():
        key = str(lead_id)
        if created is not None and (until is None or created <= until):
            first_seen[key] = min(first_seen[key], created) if key in first_seen else created
    for times in activity.values():
        times.sort()
    return StoredEvents(events, lead_ids, first_seen, activity)


def _enrichment_events(session: Session) -> list[tuple[Event, str]]:
    """The CRM enrichment ingest gave the online store (it is not in the inbox), rebuilt from lead rows: the
    identify traits at the enrichment time, and each read's mapped values at its record's modification time."""
    query = (select(Lead.id, Lead.email, Lead.title, Lead.country, Lead.enriched_at, Account.domain, Account.name,
                    Account.industry, Account.employees, Lead.properties)
             .outerjoin(Account, Account.id == Lead.account_id).where(Lead.enriched_at.is_not(None)))
    out = []
    for lead_id, email, title, country, enriched_at, domain, name, industry, employees, props in session.execute(query):
        for crm, object_type, record_id, values, at in stored_crm_values(props):
            out.append((crm_values_event(crm, object_type, record_id, values, at), str(lead_id)))
        traits = {"email": email, "jobtitle": title, "country": country, "company": name, "domain": domain,
                  "industry": industry, "numberofemployees": employees}
        traits = {k: v for k, v in traits.items() if v not in (None, "")}
        if not traits:
            continue
        event = Event(source="enrichment", crm="hubspot", object_type="contact", object_id=str(lead_id),
                      event_type="identify", occurred_at=enriched_at, received_at=enriched_at,
                      properties={"traits": traits}, dedupe_key=f"enrich-row:{lead_id}", email=email)
        out.append((event, str(lead_id)))
    return out


def stored_outcomes(session: Session, until: datetime | None = None) -> list[OutcomeRecord]:
    """Every recorded outcome (lead ids as text), oldest first."""
    query = select(Outcome.lead_id, Outcome.won, Outcome.occurred_at, Outcome.source, Outcome.detail)
    if until is not None:
        query = query.where(Outcome.occurred_at <= until)
    return [OutcomeRecord(str(lead_id), bool(won), at, source or "", detail or "")
            for lead_id, won, at, source, detail in session.execute(query.order_by(Outcome.occurred_at, Outcome.id))]


def count_outcomes(session: Session) -> int:
    """How many outcomes are recorded."""
    return int(session.scalar(select(func.count()).select_from(Outcome)) or 0)


def oldest_lead_created(session: Session) -> datetime | None:
    """When the oldest lead was first created (None without leads)."""
    return session.scalar(select(func.min(Lead.created_at)))


def score_history(session: Session, lead_ids: Iterable[int]
                  ) -> dict[str, tuple[list[datetime], list[tuple[float, str]]]]:
    """Lead id (as text) -> its score times and (probability, model version) values, in time order."""
    ids = sorted(set(lead_ids))
    history: dict[str, tuple[list[datetime], list[tuple[float, str]]]] = {}
    for start in range(0, len(ids), 500):
        query = (select(ScoreHistory.lead_id, ScoreHistory.feature_time, ScoreHistory.probability,
                        ScoreHistory.model_version)
                 .where(ScoreHistory.lead_id.in_(ids[start : start + 500]))
                 .order_by(ScoreHistory.lead_id, ScoreHistory.feature_time, ScoreHistory.id))
        for lead_id, at, p, version in session.execute(query):
            times, values = history.setdefault(str(lead_id), ([], []))
            times.append(at)
            values.append((float(p), version))
    return history


# ---- re-labelling (a new outcome definition) ---------------------------------------------------------


def crm_outcome_rows(session: Session, crm: str) -> list[tuple[int, OutcomeRecord]]:
    """(row id, outcome) of the outcomes recorded from one CRM's rules (their source starts with `<crm>.`)."""
    query = (select(Outcome.id, Outcome.lead_id, Outcome.won, Outcome.occurred_at, Outcome.source, Outcome.detail)
             .where(Outcome.source.startswith(f"{crm}.", autoescape=True)).order_by(Outcome.id))
    return [(row_id, OutcomeRecord(str(lead_id), bool(won), at, source or "", detail or ""))
            for row_id, lead_id, won, at, source, detail in session.execute(query)]


def delete_outcomes(session: Session, ids: Collection[int]) -> int:
    """Delete outcome rows by id; returns how many."""
    wanted = sorted(ids)
    for start in range(0, len(wanted), 500):
        session.query(Outcome).filter(Outcome.id.in_(wanted[start : start + 500])).delete(synchronize_session=False)
    return len(wanted)


def crm_events(session: Session, crm: str, batch: int = 1000) -> Iterator[list[Event]]:
    """One CRM's processed inbox events in batches, by id (each batch read whole, so the caller may write between)."""
    last = 0
    while True:
        rows = list(session.scalars(select(InboxEvent).where(InboxEvent.crm == crm, InboxEvent.status == "done",
                                                             InboxEvent.id > last)
                                    .order_by(InboxEvent.id).limit(batch)))
        if not rows:
            return
        last = rows[-1].id
        yield [to_event(row) for row in rows]
