"""Outcomes in the database: recorded from CRM reads and webhooks, turned into labels and training rows.

- `record_outcomes`: won/lost records read from a CRM connector (by CRM id) -> `outcomes` rows.
- `record_outcome_events`: the same from webhook events ingest has just processed: HubSpot deal
  `dealstage` closedwon/closedlost (the deal's contacts come from association events already in the
  inbox; deals whose contacts are unknown are picked up by the periodic CRM read), contact
  `lifecyclestage` = customer, Salesforce Lead `IsConverted`, Opportunity `IsClosed`/`IsWon` with a
  `ContactId`, and relayed `outcome` events.
- `lead_histories`, `labelled_leads`: first-seen and activity times per lead, and labels with the
  maturity window (scoring.labels).
- `load_events` + `training_frame`: the stored inbox events mapped to our lead ids (plus the CRM
  enrichment the online store was given), and one row per labelled lead with its features as of its
  decision time (scoring.training_set, the same feature code as the live pipeline).
- `prequential_records` / `prequential_report`: each label tested against the score the lead had at
  its decision time (from score history), and the rolling AUC and calibration over time.
Outcome rows are unique per (lead, source, occurred_at): recording the same outcome twice changes nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.records import Event, utcnow
from core.records import Outcome as OutcomeRecord
from storage.inbox import to_event
from storage.models import Account, InboxEvent, Lead, Outcome, ScoreHistory

if TYPE_CHECKING:
    import pandas as pd

    from scoring.labels import LabelledLead, LabelPolicy, LeadHistory
    from scoring.prequential import PrequentialRecord

# Default pipeline stage ids; custom pipelines' stage ids are resolved by the periodic CRM read.
HUBSPOT_DEAL_STAGES = {"closedwon": True, "closedlost": False}
TRUE_WORDS = {"true", "1", "yes"}
PREQUENTIAL_SLACK = timedelta(minutes=5)
DRIFT_REFERENCE_DAYS = 30  # a new model's drift reference: leads active in the 30 days before training  # a score computed just after the decision instant still counts


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
            for lead_id, hid in session.execute(select(Lead.id, Lead.hubspot_id).where(Lead.hubspot_id.in_(chunk))):
                out[hid] = lead_id
        elif crm == "salesforce":
            prefixes = sorted({i[:15] for i in chunk})
            query = select(Lead.id, Lead.salesforce_id).where(func.substr(Lead.salesforce_id, 1, 15).in_(prefixes))
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


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in TRUE_WORDS) or value == 1


def _time(value: Any, default: datetime) -> datetime:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return default
        if parsed.tzinfo is None:

            parsed = parsed.replace(tzinfo=UTC)
        return parsed
    return default


def outcome_of_event(event: Event) -> tuple[str, str, bool, datetime, str, str] | None:
    """(crm, CRM id of the person or deal, won, when, source, detail) if the event reports an outcome.

    For a HubSpot deal the id is the deal's (its contacts are looked up separately); None otherwise.
    """
    props = event.properties
    if event.crm == "hubspot":
        if event.object_type == "contact" and str(props.get("lifecyclestage", "")).lower() == "customer":
            return ("hubspot", event.object_id, True, event.occurred_at, "hubspot.lifecyclestage",
                    "lifecycle stage customer")
        if event.object_type == "deal" and event.event_type == "property_change":
            stage = str(props.get("dealstage") or "").lower()
            if stage in HUBSPOT_DEAL_STAGES:
                return ("hubspot", event.object_id, HUBSPOT_DEAL_STAGES[stage], event.occurred_at, "hubspot.deal",
                        f"deal {event.object_id} {stage}")
        return None
    if event.crm != "salesforce":
        return None
    if event.event_type == "outcome":
        won = props.get("won", props.get("IsWon", props.get("IsConverted")))
        if won is None:
            return None
        return ("salesforce", event.object_id, _truthy(won), _time(props.get("occurredAt"), event.occurred_at),
                "salesforce.outcome", f"{event.object_type} {event.object_id} outcome")
    if event.object_type == "lead" and _truthy(props.get("IsConverted")):
        return ("salesforce", event.object_id, True, _time(props.get("ConvertedDate"), event.occurred_at),
                "salesforce.lead", "converted")
    if event.object_type == "opportunity" and _truthy(props.get("IsClosed")) and props.get("ContactId"):
        won = _truthy(props.get("IsWon"))
        return ("salesforce", str(props["ContactId"]), won, _time(props.get("CloseDate"), event.occurred_at),
                "salesforce.opportunity", f"{event.object_id} {props.get('StageName') or ''}".strip())
    return None


def deal_contacts(session: Session, deal_ids: Iterable[str]) -> dict[str, set[str]]:
    """HubSpot deal id -> contact ids, from the deal->contact association events in the inbox."""
    out: dict[str, set[str]] = {}
    ids = sorted(set(deal_ids))
    if not ids:
        return out
    rows = session.scalars(
        select(InboxEvent).where(InboxEvent.crm == "hubspot", InboxEvent.object_type == "deal",
                                 InboxEvent.event_type == "association_change", InboxEvent.object_id.in_(ids))
        .order_by(InboxEvent.occurred_at, InboxEvent.id))
    for row in rows:
        props = row.properties or {}
        kind = str(props.get("associationType") or "").upper()
        if "CONTACT" not in kind and props.get("toObjectTypeId") != "0-1":
            continue
        contact = props.get("toObjectId")
        if contact is None:
            continue
        contacts = out.setdefault(row.object_id, set())
        if props.get("associationRemoved") is True:
            contacts.discard(str(contact))
        else:
            contacts.add(str(contact))
    return out


def record_outcome_events(session: Session, events: Sequence[Event]) -> RecordResult:
    """Store the outcomes that processed webhook events report (called by ingest in its transaction)."""
    result = RecordResult()
    found = [(e, o) for e in events if (o := outcome_of_event(e)) is not None]
    if not found:
        return result
    deals = deal_contacts(session, [o[1] for e, o in found if e.object_type == "deal"])
    people: list[tuple[str, str, bool, datetime, str, str]] = []
    for event, (crm, crm_id, won, when, source, detail) in found:
        if event.crm == "hubspot" and event.object_type == "deal":
            contacts = deals.get(crm_id)
            if not contacts:
                result.unresolved_deals.append(crm_id)
                continue
            people.extend((crm, c, won, when, source, detail) for c in sorted(contacts))
        else:
            people.append((crm, crm_id, won, when, source, detail))
    rows = []
    for crm in ("hubspot", "salesforce"):
        mine = [p for p in people if p[0] == crm]
        mapping = leads_by_crm_id(session, crm, [p[1] for p in mine])
        for _, crm_id, won, when, source, detail in mine:
            if crm_id in mapping:
                rows.append(_row(mapping[crm_id], won, when, source, detail))
            else:
                result.unknown_leads += 1
    result.recorded = _insert_outcomes(session, rows)
    result.duplicates = len(rows) - result.recorded
    return result


def record_outcome_rows(session: Session, rows: Sequence[InboxEvent]) -> RecordResult:
    """`record_outcome_events` for inbox rows ingest has just processed (skipping ignored and purged ones)."""
    from sqlalchemy import inspect

    live = [row for row in rows if not (inspect(row).deleted or inspect(row).was_deleted or inspect(row).detached)]
    return record_outcome_events(session, [to_event(row) for row in live if row.status == "done"])


# ---- events and histories -------------------------------------------------------------------------


class LeadResolver:
    """Maps stored events to our lead ids the way ingest resolved them: CRM id first, then e-mail."""

    COLUMNS: ClassVar[dict[tuple[str, str], str]] = {("hubspot", "contact"): "hubspot", ("salesforce", "lead"): "salesforce",
               ("salesforce", "contact"): "salesforce", ("web", "person"): "external"}

    def __init__(self, session: Session) -> None:
        self.ids: dict[str, dict[str, int]] = {"hubspot": {}, "salesforce": {}, "external": {}}
        self.emails: dict[str, int] = {}
        self.created: dict[int, datetime] = {}
        query = select(Lead.id, Lead.hubspot_id, Lead.salesforce_id, Lead.external_id, Lead.email, Lead.created_at)
        for lead_id, hid, sid, xid, email, created in session.execute(query.order_by(Lead.id)):
            if hid:
                self.ids["hubspot"][hid] = lead_id
            if sid:
                self.ids["salesforce"][sid[:15]] = lead_id
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


@dataclass
class StoredEvents:
    """Inbox events about leads, in time order, with the lead each belongs to."""

    events: list[Event]
    lead_ids: dict[str, str]  # event uid (dedupe key) -> lead id (as text, the feature store's entity id)
    first_seen: dict[str, datetime]
    activity: dict[str, list[datetime]]

    def lead_of(self, event: Event) -> str:
        """The lead an event belongs to (for scoring.features' `lead_of`)."""
        return self.lead_ids.get(event.dedupe_key, event.object_id)


def load_events(session: Session, *, until: datetime | None = None, since: datetime | None = None,
                progress: Callable[[int], None] | None = None) -> StoredEvents:
    """Processed inbox events about leads (plus each lead's CRM enrichment), mapped to lead ids."""
    from scoring.features import ACTIVITY_TYPES

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
        if event.event_type in ACTIVITY_TYPES:
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
    """The CRM enrichment ingest gave the online store (it is not in the inbox), rebuilt from lead rows."""
    query = (select(Lead.id, Lead.email, Lead.title, Lead.country, Lead.enriched_at, Account.domain, Account.name,
                    Account.industry, Account.employees)
             .outerjoin(Account, Account.id == Lead.account_id).where(Lead.enriched_at.is_not(None)))
    out = []
    for lead_id, email, title, country, enriched_at, domain, name, industry, employees in session.execute(query):
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


def lead_histories(stored: StoredEvents) -> dict[str, LeadHistory]:
    """First-seen and activity times per lead, for labelling."""
    from scoring.labels import LeadHistory

    return {lead: LeadHistory(first, tuple(stored.activity.get(lead, ()))) for lead, first in stored.first_seen.items()}


def labelled_leads(session: Session, stored: StoredEvents, now: datetime, policy: LabelPolicy) -> list[LabelledLead]:
    """Labels as of `now` under the maturity window, ordered by when each became known."""
    from scoring.labels import label_leads

    return label_leads(lead_histories(stored), stored_outcomes(session, until=now), now, policy)


@dataclass
class TrainingData:
    """The decision frame and what went into it."""

    frame: pd.DataFrame
    labels: list[LabelledLead]
    events: int
    leads_seen: int
    outcomes: int
    window_start: datetime | None
    window_end: datetime | None
    reference_rows: list[dict[str, Any]] = field(default_factory=list)  # the population scored before `now`
    dropped_for_retention: int = 0  # labels left out: their history was purged (see history_cutoff)


def training_frame(session: Session, now: datetime, policy: LabelPolicy, *,
                   progress: Callable[[str, int, int | None], None] | None = None) -> TrainingData:
    """Labelled leads with their features as of their decision times, from the inbox and outcomes tables."""
    from scoring.training_set import EventIndex, build_decision_frame, population_rows

    def step(what: str, advance: int, total: int | None = None) -> None:
        if progress is not None:
            progress(what, advance, total)

    stored = load_events(session, until=now, progress=lambda n: step("reading events", n))
    labels = labelled_leads(session, stored, now, policy)
    cutoff = history_cutoff(session, stored)
    kept = [label for label in labels if cutoff is None or label.decision_time >= cutoff]
    dropped = len(labels) - len(kept)
    labels = kept
    step("labelling", 0, len(labels))
    index = EventIndex(stored.events, stored.lead_of)
    frame = build_decision_frame(index, labels, progress=lambda n: step("building features", n, len(labels)))
    outcomes = int(session.scalar(select(func.count()).select_from(Outcome)) or 0)
    times = [label.decision_time for label in labels]
    reference = population_rows(index, now, days=DRIFT_REFERENCE_DAYS)
    return TrainingData(frame, labels, len(stored.events), len(stored.first_seen), outcomes,
                        min(times) if times else None, max(times) if times else None, reference, dropped)


def history_cutoff(session: Session, stored: StoredEvents) -> datetime | None:
    """The earliest decision time whose 30 days of history are still in the inbox, once retention purged some.

    Retention deletes old raw events; a lead decided less than 30 days (the longest feature window)
    after the oldest event left would get a vector with holes, so such labels stay out of training.
    None while nothing was purged (the oldest event is about as old as the oldest lead).
    """
    from scoring.features import HORIZON_MS

    if not stored.events:
        return None
    oldest_event = min(e.occurred_at for e in stored.events if e.source != "enrichment") \
        if any(e.source != "enrichment" for e in stored.events) else None
    oldest_lead = session.scalar(select(func.min(Lead.created_at)))
    if oldest_event is None or oldest_lead is None or oldest_event <= oldest_lead + timedelta(days=1):
        return None
    return oldest_event + timedelta(milliseconds=HORIZON_MS)


# ---- prequential ----------------------------------------------------------------------------------


def prequential_records(session: Session, labels: Sequence[LabelledLead]) -> tuple[list[PrequentialRecord], int]:
    """Test-then-train over stored labels: each scored by the lead's live score at its decision time.

    Returns the records (in label order) and how many labels had no score at their decision time.
    """
    from scoring.prequential import Prediction, PrequentialEvaluator

    ids = sorted({int(label.lead_id) for label in labels if str(label.lead_id).isdigit()})
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

    def live_score(label: LabelledLead) -> Prediction | None:
        times, values = history.get(str(label.lead_id), ([], []))
        i = bisect.bisect_right(times, label.decision_time + PREQUENTIAL_SLACK)
        if i == 0:
            return None
        p, version = values[i - 1]
        return Prediction(p, version)

    evaluator = PrequentialEvaluator(live_score)
    records = evaluator.observe_all(labels)
    return records, evaluator.untested


def prequential_report(session: Session, *, now: datetime | None = None, policy: LabelPolicy | None = None,
                       window_days: int = 28, step_days: int = 7) -> dict[str, Any]:
    """Rolling ROC AUC and calibration of the live scores, per window of decision time (for the admin)."""
    from scoring.drift import prequential_adwin
    from scoring.labels import LabelPolicy
    from scoring.prequential import rolling_metrics, window_metrics

    now = now or utcnow()
    policy = policy or LabelPolicy()
    stored = load_events(session, until=now)
    labels = labelled_leads(session, stored, now, policy)
    records, untested = prequential_records(session, labels)
    windows = rolling_metrics(records, window=timedelta(days=window_days), step=timedelta(days=step_days))
    overall = window_metrics(records, records[0].decision_time, now) if records else None
    by_model: dict[str, int] = {}
    for record in records:
        by_model[record.model_version] = by_model.get(record.model_version, 0) + 1
    return {"generated_at": now.isoformat(), "labels": len(labels), "tested": len(records), "untested": untested,
            "maturity_days": policy.maturity.total_seconds() / 86400, "window_days": window_days,
            "overall": overall.to_json() if overall else None, "windows": [w.to_json() for w in windows],
            "models": by_model, "adwin": prequential_adwin(records)}


def label_counts(labels: Sequence[LabelledLead]) -> Mapping[str, int]:
    """How many labels are positive and negative."""
    positives = sum(1 for label in labels if label.won)
    return {"labelled": len(labels), "positives": positives, "negatives": len(labels) - positives}
