"""Backfill: import a CRM's history (records and won/lost outcomes), build features in time order, score.

Plain functions that `leadbridge backfill` drives; no worker is needed:

1. fetch: page through the CRM with its connector (connectors/<crm>/history.py: HubSpot contacts,
   companies and deals; Salesforce Leads, Contacts, Accounts and Opportunities over SOQL) and read the outcomes;
   mapped properties come with their value history (HubSpot propertiesWithHistory; Salesforce LeadHistory /
   ContactHistory for the fields the org tracks);
2. import: turn records into canonical events with stable dedupe keys (a re-run stores nothing twice;
   a record that changed since is stored once more, as a change at its last-modified time), commit
   them to the inbox and ingest them in occurred_at order through the same code as live webhooks, so
   leads, accounts and the online features (RedisFeatureStore.apply_many) are built as of each event's
   own time; outcomes become `outcomes` rows;
3. score: every lead of that CRM, in-process (tasks.score.score_and_store, trigger "backfill"), and mark
   the changed ones for writeback; the writeback stage writes them within the shared rate limits.

Scoring runs in this process rather than as queued score tasks because (a) the command then ends when
every lead really is scored and its progress bar says how far it got, (b) it works before any worker
runs (a first install), (c) it fires no Slack alerts for history, and (d) it does not put thousands of
tasks ahead of live events on the score queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import CrmRecord, History, Progress, SilentProgress
from connectors.registry import PROVIDERS, provider
from core.keys import DIRTY_KEY
from core.records import Event, utcnow
from core.records import Outcome as OutcomeRecord
from core.values import EntryRefused, clean_event
from scoring.schema import FeatureSchema
from storage.inbox import store_events
from storage.models import InboxEvent, LeadCrmId
from storage.outcomes import record_outcomes
from tasks.ingest import IngestResult, ingest_rows, mapped_properties, settle_links
from tasks.resources import Resources
from tasks.score import score_and_store

log = logging.getLogger(__name__)

CHUNK = 500  # events per transaction, leads per scoring call
KEY_PREFIX = "bf"  # backfill dedupe keys: bf:<hs|sf>:<kind>:<id>:<content hash>
# Fields that change on every write (ours included) and say nothing about the record, and fields that
# describe where a record stands now, not what it was when created: on a first import the latter enter as
# a change at the record's last-modified time, so nothing later (a customer stage, a conversion, a closed
# deal) is backdated to the creation. Each CRM names its own (connectors/<crm>/history.py).
VOLATILE = frozenset().union(*(p.history.VOLATILE_FIELDS for p in PROVIDERS.values()))
STATE_FIELDS = frozenset().union(*(p.history.STATE_FIELDS for p in PROVIDERS.values()))


@dataclass
class BackfillReport:
    """What one backfill run did."""

    crm: str
    fetched: dict[str, int] = field(default_factory=dict)
    outcomes_read: int = 0
    events: int = 0  # canonical events built from the history
    events_new: int = 0  # of which stored now (the rest were imported by an earlier run)
    outcomes_new: int = 0
    leads_scored: int = 0
    scores_changed: int = 0
    queued_writes: int = 0
    api_calls: int = 0
    seconds: float = 0.0
    # Mapped fields (the feature schema): values read with the time each was set (HubSpot history) ...
    mapped_values: int = 0
    # ... and values known only as of their record's last modification (Salesforce fields the org does not track,
    # or whose history does not reach back to the record's creation): a training row decided before that time
    # does not see them. `labels_before_values`: outcomes of such records that precede it.
    values_at_last_modified: int = 0
    labels_before_values: int = 0


# ---- history -> canonical events ----------------------------------------------------------------------


def _digest(values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]




@dataclass(frozen=True)
class _Snapshot:
    """One record's identity, its current state, or a person's company traits, as this run sees them."""

    crm: str
    kind: str  # part of the key: contact, company, deal, lead, account, opportunity, state, fit
    object_type: str
    object_id: str
    properties: dict[str, Any]
    email: str | None
    first_at: datetime  # when a first sight happened (the record's creation)
    later_at: datetime  # when a changed state took effect (the record's last change)
    first_type: str
    later_type: str
    key_id: str = ""  # what identifies the thing within its kind (default: the object id)

    @property
    def prefix(self) -> str:
        """The key without the content hash: the same for every state of one thing."""
        return f"{KEY_PREFIX}:{provider(self.crm).history.KEY_CODE}:{self.kind}:{self.key_id or self.object_id}"

    @property
    def key(self) -> str:
        """The dedupe key of this state."""
        return f"{self.prefix}:{_digest(self.properties)}"


def _snapshots(history: History, schema: FeatureSchema) -> list[_Snapshot]:
    now = utcnow()
    rules = provider(history.crm).history
    by_id = {(r.object_type, r.id): r for r in history.records}
    out: list[_Snapshot] = []
    for record in history.records:
        mapped = _mapped_of(schema, record)
        props = {k: v for k, v in record.properties.items()
                 if k not in VOLATILE and not k.lower().startswith("leadbridge_") and k.lower() not in mapped}
        created = record.created_at or record.updated_at or now
        updated = max(record.updated_at or created, created)
        email = _email(props.get("email") or props.get("Email"))
        identity = {k: v for k, v in props.items() if k not in STATE_FIELDS}
        state = {k: v for k, v in props.items() if k in STATE_FIELDS}
        # A mapped field read without its history is known to hold only as of the record's last change: it
        # enters with the record's state (never backdated to the creation), cleared values included.
        state.update({real: record.properties.get(real) for real in _untracked(record, mapped)})
        out.append(_Snapshot(history.crm, record.object_type, record.object_type, record.id, identity, email, created,
                             updated, "created", "property_change"))
        if state:
            out.append(_Snapshot(history.crm, "state", record.object_type, record.id, state, email, updated, updated,
                                 "property_change", "property_change", f"{record.object_type[:3]}:{record.id}"))
        company = rules.company_of(record, by_id)
        if company is not None:
            # What live enrichment adds when it first sees a person: their company's firmographics as traits.
            traits = rules.company_traits(company)
            if traits:
                later = max(updated, company.updated_at or updated)
                out.append(_Snapshot(history.crm, "fit", record.object_type, record.id, {"traits": traits}, email,
                                     created, later, "identify", "identify"))
    return out


def _mapped_of(schema: FeatureSchema, record: CrmRecord) -> dict[str, str]:
    """The record's mapped properties, lower-cased -> the name the record spells them with."""
    names = {p.lower(): p for p in schema.properties_of(record.crm, record.object_type)}
    for key in (*record.properties, *record.history):
        if key.lower() in names:
            names[key.lower()] = key
    return names


def _untracked(record: CrmRecord, mapped: dict[str, str]) -> list[str]:
    historied = {k.lower() for k in record.history}
    return [real for low, real in mapped.items() if low not in historied]


def _value_events(history: History, schema: FeatureSchema, now: datetime) -> list[Event]:
    """One change per value a mapped property had, at the time it was set (read with its history)."""
    code = provider(history.crm).history.KEY_CODE
    events = []
    for record in history.records:
        mapped = _mapped_of(schema, record)
        for name, values in record.history.items():
            if name.lower() not in mapped:
                continue
            for when, value in values:
                ms = int(when.timestamp() * 1000)
                events.append(Event(
                    source="backfill", crm=history.crm, object_type=record.object_type,  # type: ignore[arg-type]
                    object_id=record.id, event_type="property_change", occurred_at=when, received_at=now,
                    properties={name: value}, dedupe_key=f"{KEY_PREFIX}:{code}:v:{record.id}:{_digest([name, ms, value])}"))
    return events


def mapped_value_costs(history: History, schema: FeatureSchema) -> tuple[int, int]:
    """(mapped values known only at their record's last modification, outcomes of those records before it)."""
    values = labels = 0
    late: dict[str, datetime] = {}
    for record in history.records:
        count = sum(1 for real in _untracked(record, _mapped_of(schema, record))
                    if record.properties.get(real) not in (None, ""))
        if count and record.updated_at is not None:
            values += count
            late[record.id] = record.updated_at
    for outcome in history.outcomes:
        at = late.get(outcome.lead_id)
        if at is not None and outcome.occurred_at < at:
            labels += 1
    return values, labels


def _email(value: Any) -> str | None:
    if isinstance(value, str) and "@" in value:
        return value.strip().lower()[:320]
    return None


def _checked(event: Event, what: str) -> Event | None:
    """The event through the validation boundary (core.values), or None when it refuses the entry (logged)."""
    # CRM history is vendor data like any webhook: the same boundary checks its values.
    try:
        event, dropped = clean_event(event)
    except EntryRefused as exc:
        log.warning(f"backfill.{what}_refused", extra={"crm": event.crm, "reason": exc.reason})
        return None
    if dropped:
        log.info("backfill.values_dropped", extra={"crm": event.crm, "fields": [d.field for d in dropped][:10]})
    return event


def history_events(session: Session, history: History, schema: FeatureSchema | None = None) -> list[Event]:
    """Canonical events for what this run sees that earlier runs did not, in occurred_at order.

    A record never imported becomes a `created` event at its creation time; one whose content changed
    since the last import becomes a `property_change` at its last-modified time; an unchanged one
    becomes nothing. Keys are `bf:<hs|sf>:<kind>:<id>:<content hash>`. A property of `schema` read with its
    history becomes a `property_change` per value at the time it was set (`bf:<hs|sf>:v:<id>:<hash>`).
    """
    schema = schema or FeatureSchema.empty()
    snapshots = _snapshots(history, schema)
    seen_prefixes: set[str] = set()
    seen_keys: set[str] = set()
    like = f"{KEY_PREFIX}:{provider(history.crm).history.KEY_CODE}:%"
    for key in session.scalars(select(InboxEvent.dedupe_key).where(InboxEvent.dedupe_key.like(like))):
        seen_keys.add(key)
        seen_prefixes.add(key.rsplit(":", 1)[0])
    now = utcnow()
    events = []
    for snap in snapshots:
        if snap.key in seen_keys:
            continue
        first = snap.prefix not in seen_prefixes
        event = Event(
            source="backfill", crm=snap.crm, object_type=snap.object_type,  # type: ignore[arg-type]
            object_id=snap.object_id,
            event_type=snap.first_type if first else snap.later_type,
            occurred_at=snap.first_at if first else snap.later_at, received_at=now, properties=snap.properties,
            dedupe_key=snap.key, email=snap.email,
        )
        seen_keys.add(snap.key)
        checked = _checked(event, "record")
        if checked is not None:
            events.append(checked)
    for event in _value_events(history, schema, now):
        if event.dedupe_key in seen_keys:
            continue
        seen_keys.add(event.dedupe_key)
        checked = _checked(event, "value")
        if checked is not None:
            events.append(checked)
    events.sort(key=lambda e: (e.occurred_at, e.dedupe_key))
    return events


# ---- import --------------------------------------------------------------------------------------------


@dataclass
class Imported:
    """What importing events did: rows stored now, leads touched, leads whose CRM write target moved."""

    stored: int = 0
    leads: set[int] = field(default_factory=set)
    retargeted: set[int] = field(default_factory=set)


def import_events(res: Resources, events: Sequence[Event], progress: Progress | None = None) -> Imported:
    """Store events in the inbox and ingest them in time order, a chunk per transaction.

    Each chunk's rows are inserted and processed in one transaction, so the sweeper never sees them pending
    and hands them to a worker out of order. Leads folded into another (a converted Lead's Contact seen
    first) leave Redis once at the end: that purge scans the keys, and nothing reads them before scoring.
    """
    progress = progress or SilentProgress()
    progress.stage("import", len(events))
    done = Imported()
    linked = IngestResult()
    for start in range(0, len(events), CHUNK):
        chunk = events[start : start + CHUNK]
        with res.db.session(write=True) as session:
            ids = store_events(session, chunk, None)
            result = ingest_rows(session, ids, res) if ids else IngestResult()
        done.leads |= result.leads
        linked.merged |= result.merged
        for lead_id, crms in result.retargeted.items():
            linked.retargeted.setdefault(lead_id, set()).update(crms)
        done.stored += len(ids)
        progress.advance("import", len(chunk))
    for lead_id in linked.merged:
        linked.retargeted.pop(lead_id, None)
    settle_links(res, linked)
    done.leads -= linked.merged
    done.retargeted = set(linked.retargeted)
    return done


def import_outcomes(res: Resources, crm: str, outcomes: Iterable[OutcomeRecord]) -> int:
    """Outcome rows for leads we know (by CRM id); an outcome already stored is left alone. Returns new rows."""
    outcomes = list(outcomes)
    if not outcomes:
        return 0
    with res.db.session(write=True) as session:
        result = record_outcomes(session, crm, outcomes)
    if result.unknown_leads:
        log.warning("backfill.outcomes_without_lead", extra={"crm": crm, "count": result.unknown_leads})
    return result.recorded


# ---- score -----------------------------------------------------------------------------------------------


def crm_lead_ids(res: Resources, crm: str) -> list[int]:
    """Every lead that has an id in `crm`."""
    with res.db.session() as session:
        return list(session.scalars(select(LeadCrmId.lead_id).where(LeadCrmId.crm == crm).distinct()
                                    .order_by(LeadCrmId.lead_id)))


def score_leads_now(res: Resources, lead_ids: Sequence[int], *, writeback: bool = True,
                    progress: Progress | None = None, also_write: Iterable[int] = ()) -> tuple[int, int]:
    """Score leads in this process (trigger "backfill"), marking changed ones dirty for writeback.

    `also_write`: leads to write even if their score stays (their write target moved, e.g. to a Contact).
    Returns (scores that changed, leads queued for a CRM write). No alerts fire: history is not news.
    """
    also = {int(i) for i in also_write}
    progress = progress or SilentProgress()
    progress.stage("score", len(lead_ids))
    changed = queued = 0
    for start in range(0, len(lead_ids), CHUNK):
        chunk = list(lead_ids[start : start + CHUNK])
        before = _dirty_count(res) if writeback else 0
        changes = score_and_store(res, chunk, "backfill", mark_writes=writeback,
                                  also_write=[i for i in chunk if i in also])
        changed += len(changes)
        queued += _dirty_count(res) - before if writeback else 0
        progress.advance("score", len(chunk))
    return changed, queued


def _dirty_count(res: Resources) -> int:
    return sum(int(res.redis.scard(DIRTY_KEY.format(crm=crm)) or 0) for crm in PROVIDERS)


# ---- the whole run ---------------------------------------------------------------------------------------


def backfill(res: Resources, crm: str, connector: Any, *, writeback: bool = True,
             progress: Progress | None = None) -> BackfillReport:
    """Fetch, import and score one CRM's history; safe to run again (nothing is imported twice)."""
    if crm not in PROVIDERS:
        raise ValueError(f"crm must be hubspot or salesforce, not {crm!r}")
    started = time.monotonic()
    progress = progress or SilentProgress()
    calls_before = getattr(connector, "calls", 0)
    schema = res.schema()
    history = provider(crm).history.fetch(connector, progress, mapped_properties(res, crm))
    report = BackfillReport(crm=crm, outcomes_read=len(history.outcomes),
                            api_calls=getattr(connector, "calls", 0) - calls_before)
    for record in history.records:
        report.fetched[record.object_type] = report.fetched.get(record.object_type, 0) + 1
    with res.db.session() as session:
        events = history_events(session, history, schema)
    report.events = len(events)
    report.mapped_values = sum(1 for e in events if e.dedupe_key.split(":")[2:3] == ["v"])
    report.values_at_last_modified, report.labels_before_values = mapped_value_costs(history, schema)
    imported = import_events(res, events, progress)
    report.events_new = imported.stored
    report.outcomes_new = import_outcomes(res, crm, history.outcomes)
    lead_ids = crm_lead_ids(res, crm)
    report.leads_scored = len(lead_ids)
    report.scores_changed, report.queued_writes = score_leads_now(res, lead_ids, writeback=writeback,
                                                                  progress=progress, also_write=imported.retargeted)
    report.seconds = time.monotonic() - started
    return report

