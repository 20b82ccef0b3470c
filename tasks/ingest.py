"""Ingest stage: committed inbox rows -> leads and accounts, online features, then scoring.

Exactly once in effect: a row is processed only while it is `pending`, in the same transaction that
marks it done; the feature store ignores an event it has already counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celery import shared_task
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from connectors.base import ConnectorError, TransientConnectorError
from connectors.registry import (
    account_fields,
    feature_objects,
    is_own_echo,
    lead_fields,
    linked_people,
    outcomes_of_events,
    seen_key,
)
from core.keys import ENRICHED_KEY, WRITTEN_KEY
from core.progress import record_progress
from core.records import Event, utcnow
from storage.dead_letters import count_inbox_failure, describe_error, error_kind
from storage.inbox import to_event
from storage.leads import (
    LEAD_KINDS,
    add_crm_id,
    apply_enrichment,
    crm_ids_of,
    crm_values_event,
    is_account_event,
    is_lead_event,
    lead_id_by_record,
    link_records,
    merge_leads,
    processed_events_of,
    remember_crm_values,
    resolve_account,
    resolve_leads,
    same_person_pairs,
)
from storage.models import InboxEvent, Lead
from storage.outcomes import RecordResult, association_events, record_outcomes
from storage.privacy import forget_in_redis, forget_lead
from tasks.isolation import is_transient, isolate, retry_delay
from tasks.resources import Resources, resources

log = logging.getLogger(__name__)

ENRICH_ATTEMPTS = 12  # first-sight enrichment tries while the CRM answers 429/5xx (backing off up to 5 min)


@dataclass
class IngestResult:
    """What one batch did."""

    processed: int = 0
    ignored: int = 0
    leads: set[int] = field(default_factory=set)
    new_leads: list[int] = field(default_factory=list)
    forgotten: int = 0
    merged: set[int] = field(default_factory=set)  # leads folded into another (a converted Lead's Contact)
    # lead id -> CRMs where it gained a record: its write target there may have moved (a Lead to its Contact)
    retargeted: dict[int, set[str]] = field(default_factory=dict)


BACKLOG_BATCH = 2000  # rows one ingest task may take when deliveries queue up


@shared_task(name="tasks.ingest.process_events", autoretry_for=(OperationalError,), retry_backoff=1,
             retry_backoff_max=60, retry_jitter=True, max_retries=10, acks_late=True)
def process_events(ids: list[int], retry: bool = False) -> int:
    """Process the still-pending inbox rows among `ids` (one task per delivered batch), then score their leads.

    The score stage runs here, in the same process, for the leads this batch touched: a hop through the
    score queue cost a broker round trip and a wait behind other tasks on every event's way to the CRM.
    Re-scores from elsewhere (enrichment, decay, the sweeper) still go through tasks.score.score_leads.
    A row that makes the batch fail is found and set apart (tasks.isolation); `retry` marks the task that
    tries such a row again.
    """
    from tasks.score import queue_actions, score_isolated, score_leads

    res = resources()
    started = time.monotonic()
    result = ingest_isolated(res, ids, take_backlog=not retry)
    if result.new_leads and can_enrich(res):
        # Enrichment costs CRM round trips (100-300 ms against the real APIs): score with what we know now,
        # so the first write does not wait on them, and refine once the CRM has answered.
        enrich_leads.delay(result.new_leads)
    if result.leads:
        leads = sorted(result.leads)
        # A lead whose write target moved (a converted Lead's Contact) is written even if its score stays.
        moved = sorted(set(result.retargeted) & result.leads)
        try:
            changes = score_isolated(res, leads, "event", mark_writes=True, also_write=moved)
        except Exception:  # noqa: BLE001 - transient (the rest is isolated): the events are in, score on its own
            log.warning("ingest.inline_score_failed", exc_info=True)
            score_leads.delay(leads, write_all=bool(moved))
        else:
            queue_actions(res, changes, kick=bool(moved))
    record_progress(res.redis, "ingest", result.processed)
    if time.monotonic() - started > 1.0:
        log.warning("ingest.slow_batch %.2fs, %d rows, %d leads", time.monotonic() - started, result.processed,
                    len(result.leads))
    return result.processed


def ingest_isolated(res: Resources, ids: Sequence[int], *, take_backlog: bool = True) -> IngestResult:
    """Ingest `ids` (and, under a backlog, the rows queued behind them) so that a bad row stops nothing.

    The batch runs in one transaction. If it fails for a reason that is not transient, it is split until
    the failing rows stand alone (tasks.isolation): every other row is processed, and each failing row's
    attempt is counted in a transaction of its own, after the rollback. A row is tried again with backoff
    and becomes a dead letter after `max_attempts` failures.
    """
    taken: list[int] = list(ids)
    try:
        with res.db.session(write=True) as session:
            if take_backlog:
                # Under a backlog, take the pending rows queued behind this batch too (their own tasks then find
                # nothing to do): a lead in several waiting batches is resolved, scored and written once, not once
                # per batch. Read in the order of the (status, received_at) index, so a deep backlog costs a short
                # index walk; on PostgreSQL rows another worker has taken are skipped. Rows that failed before wait
                # for their own retry (with backoff), so one bad row is not re-run by every task.
                taken.extend(session.scalars(
                    select(InboxEvent.id)
                    .where(InboxEvent.status == "pending", InboxEvent.id.not_in(list(ids)), InboxEvent.error.is_(None))
                    .order_by(InboxEvent.received_at).limit(max(0, BACKLOG_BATCH - len(ids)))
                    .with_for_update(skip_locked=True)
                ).all())
            result = ingest_rows(session, taken, res)
    except Exception as exc:  # noqa: BLE001 - anything but a transient error may be one row's fault
        if is_transient(exc):
            raise
        log.warning("ingest.batch_failed", extra={"rows": len(taken), "error": error_kind(exc)})
        whole = exc
    else:
        settle_links(res, result)  # committed: now the folded leads may leave Redis
        return result

    def run(part: Sequence[int]) -> IngestResult:
        with res.db.session(write=True) as session:
            done = ingest_rows(session, part, res)
        settle_links(res, done)
        return done

    results, failed = isolate(sorted(taken), run, whole_failed=whole)
    for row_id, exc in failed:
        count_row_failure(res, row_id, exc)
    merged = IngestResult()
    for part in results:
        merged.processed += part.processed
        merged.ignored += part.ignored
        merged.forgotten += part.forgotten
        merged.leads |= part.leads
        merged.new_leads.extend(part.new_leads)
        merged.merged |= part.merged
        for lead_id, crms in part.retargeted.items():
            merged.retargeted.setdefault(lead_id, set()).update(crms)
    merged.new_leads = sorted(set(merged.new_leads))
    merged.leads -= merged.merged
    return merged


def settle_links(res: Resources, result: IngestResult) -> None:
    """After the commit that linked records: drop folded leads from Redis, forget moved targets' fingerprints.

    A folded lead's features were re-applied to the lead it became (before the commit, like all features);
    its own keys (features, writeback marks, its place among an account's engaged contacts) go now, so an
    account does not count the person twice. A lead whose write target moved (a Lead to its Contact) has its
    written-values fingerprint dropped: the new record shows nothing yet, so the next write must happen.
    """
    if result.merged:
        forget_in_redis(res.redis, sorted(result.merged))
    if result.retargeted:
        pipe = res.redis.pipeline(transaction=False)
        for lead_id, crms in sorted(result.retargeted.items()):
            for crm in sorted(crms):
                pipe.hdel(WRITTEN_KEY.format(crm=crm), lead_id)
        pipe.execute()


def count_row_failure(res: Resources, row_id: int, exc: BaseException) -> None:
    """Count one failed attempt of an inbox row (its own transaction) and schedule the next, or dead-letter it."""
    max_attempts = res.settings.max_attempts
    with res.db.session(write=True) as session:
        attempts = session.scalar(select(InboxEvent.attempts).where(InboxEvent.id == row_id)) or 0
        delay = retry_delay(attempts + 1)
        failure = count_inbox_failure(session, row_id, describe_error(exc), max_attempts=max_attempts,
                                      retry_at=utcnow() + timedelta(seconds=delay))
    if failure is None:
        return
    if failure.dead:
        log.error("ingest.dead_letter", extra={"row": row_id, "attempts": failure.attempts, "error": error_kind(exc)})
        return
    log.warning("ingest.row_failed", extra={"row": row_id, "attempts": failure.attempts, "error": error_kind(exc),
                                            "retry_in": delay})
    process_events.apply_async(kwargs={"ids": [row_id], "retry": True}, countdown=delay)


@shared_task(name="tasks.ingest.enrich_leads", autoretry_for=(OperationalError,), retry_backoff=1,
             retry_backoff_max=60, retry_jitter=True, max_retries=10, acks_late=True)
def enrich_leads(lead_ids: list[int], attempt: int = 1) -> int:
    """Read first-seen leads (and their companies) from the CRM once, then re-score them.

    Transient trouble (CRM 429/5xx, a dropped database connection) schedules another attempt with backoff.
    """
    from tasks.score import score_leads

    res = resources()
    enriched = enrich_new_leads(res, lead_ids, attempt=attempt)
    folded = fold_same_people(res, lead_ids) if enriched else {}
    if enriched:
        score_leads.delay(sorted({folded.get(i, i) for i in lead_ids}), trigger="enrichment", write_all=True)
    return enriched


def fold_same_people(res: Resources, lead_ids: Sequence[int]) -> dict[int, int]:
    """Fold each lead that enrichment showed to be another lead's person (same e-mail, records from other CRMs).

    The folded lead's stored events are applied to the kept lead's features, which is then written to both
    CRMs' records (settle_links); returns folded lead id -> kept lead id.
    """
    try:
        return _fold_same_people(res, lead_ids)
    except (IntegrityError, StaleDataError):
        # Another worker folded or deleted one of these leads meanwhile (PostgreSQL): theirs stands.
        log.warning("ingest.fold_skipped", extra={"leads": len(lead_ids)})
        return {}


def _fold_same_people(res: Resources, lead_ids: Sequence[int]) -> dict[int, int]:
    result = IngestResult()
    folded: dict[int, int] = {}
    with res.db.session(write=True) as session:
        for keep, gone in same_person_pairs(session, lead_ids):
            gone_id = gone.id
            records = merge_leads(session, keep=keep, gone=gone)
            stored = processed_events_of(session, records)
            log.info("ingest.leads_merged", extra={"lead": keep.id, "folded": gone_id, "events": len(stored)})
            # Applied by event id, before the commit as in _link_people: nothing the lead counted is counted twice.
            res.features.apply_many(stored, [str(keep.id)] * len(stored))
            result.merged.add(gone_id)
            result.retargeted.setdefault(keep.id, set()).update(crm for crm, _, _ in records if crm != "web")
            folded[gone_id] = keep.id
    if result.merged:
        settle_links(res, result)
    return folded


def ingest_rows(session: Session, ids: Sequence[int], res: Resources | None = None) -> IngestResult:
    """Resolve each pending row's lead/account, fold it into the online features, and mark it done."""
    query = (
        select(InboxEvent)
        .where(InboxEvent.id.in_(list(ids)), InboxEvent.status == "pending")
        .order_by(InboxEvent.occurred_at, InboxEvent.id)
        # Rows another worker is already processing are skipped (PostgreSQL); SQLite serialises writers anyway.
        .with_for_update(skip_locked=True)
    )
    rows = list(session.scalars(query))
    result = IngestResult()
    now = utcnow()
    events = [to_event(row) for row in rows]
    for row in rows:
        row.attempts += 1
        row.processed_at = now
        row.status = "done"
        if row.error is not None:  # an earlier attempt failed; this one went through
            row.error = None
    result.processed = len(rows)
    person_rows = [i for i, e in enumerate(events) if is_lead_event(e) and not _purges(e)]
    # An echo the event alone reveals (HubSpot) is dropped before a lead is resolved (or created) for it,
    # so our own write to a record leadbridge no longer knows (after `forget`) cannot bring the person back.
    echoes = {i for i in person_rows if seen_key(events[i].crm) is None and is_own_echo(events[i])}
    person_rows = [i for i in person_rows if i not in echoes]
    people = [events[i] for i in person_rows]
    leads = dict(zip(person_rows, resolve_leads(session, people, [lead_fields(e.crm, e.properties) for e in people])))
    if any(linked_people(e) for e in people):
        leads = _link_people(session, events, leads, res, result)
    feature_events: list[Event] = []
    feature_leads: list[str] = []
    gone: set[int] = set()  # leads purged by a deletion in this batch
    for i, (row, event) in enumerate(zip(rows, events)):
        if i in echoes:
            row.status = "ignored"
            row.error = "our own write echoed back"
            result.ignored += 1
        elif _purges(event):
            forgotten = forget_by_event(session, event, res)
            if forgotten is not None:
                result.forgotten += 1
                gone.add(forgotten)
        elif i in leads:
            lead = leads[i]
            if _is_echo(lead, event):
                row.status = "ignored"
                row.error = "our own write echoed back"
                result.ignored += 1
                continue
            key = seen_key(event.crm)
            if key is not None and event.event_type in ("created", "property_change"):
                seen = {k: v for k, v in event.properties.items() if k != "_meta"}
                lead.properties = {**(lead.properties or {}), key: seen}
            if lead.enriched_at is None:
                result.new_leads.append(lead.id)
            result.leads.add(lead.id)
            feature_events.append(event)
            feature_leads.append(str(lead.id))
        elif is_account_event(event):
            resolve_account(session, event, account_fields(event.crm, event.properties))
    result.new_leads = sorted(set(result.new_leads))
    session.flush()
    # Won/lost signals among these events (deal stage, lifecycle stage, conversions) become outcome rows.
    record_outcome_events(session, [event for row, event in zip(rows, events)
                                    if not _removed(row) and row.status == "done"])
    if gone:
        # Events in the same batch must not bring a purged person's features (and e-mail) back into Redis.
        kept = [(e, lead) for e, lead in zip(feature_events, feature_leads) if int(lead) not in gone]
        feature_events, feature_leads = [e for e, _ in kept], [lead for _, lead in kept]
        result.leads -= gone
        result.new_leads = [i for i in result.new_leads if i not in gone]
    if res is not None and feature_events:
        # Redis is updated before the rows commit: a crash in between re-runs the batch, and the store
        # counts each event once (events are keyed by their dedupe key), so nothing is counted twice.
        res.features.apply_many(feature_events, feature_leads)
    return result


def _link_people(session: Session, events: Sequence[Event], leads: dict[int, Lead], res: Resources | None,
                 result: IngestResult) -> dict[int, Lead]:
    """Give each lead the records its events say are the same person (a converted Lead's Contact).

    A lead that already stood for such a record (the Contact's event came first) is folded into this one:
    its stored events are applied to this lead's online features, and the batch's events that resolved to
    it now belong to this lead. Returns the batch's leads, folded ones replaced.
    """
    ids = {i: lead.id for i, lead in leads.items()}
    links = [(lead, record) for i, lead in leads.items() for record in linked_people(events[i])]
    linked = link_records(session, links)
    for lead_id, crms in linked.gained.items():
        result.retargeted.setdefault(lead_id, set()).update(crms)
    if not linked.merged:
        return leads
    result.merged |= set(linked.merged)
    for lead_id in linked.merged:
        result.retargeted.pop(lead_id, None)
    if res is not None:
        for folded, (target, records) in sorted(linked.merged.items()):
            stored = processed_events_of(session, records)
            log.info("ingest.leads_merged", extra={"lead": target.id, "folded": folded, "events": len(stored)})
            # Applied by event id: what the lead counted already is not counted again.
            res.features.apply_many(stored, [str(target.id)] * len(stored))
    return {i: linked.merged[ids[i]][0] if ids[i] in linked.merged else lead for i, lead in leads.items()}


def _removed(row: InboxEvent) -> bool:
    state = inspect(row)
    return bool(state.deleted or state.was_deleted or state.detached)


def _purges(event: Event) -> bool:
    # A deleted contact/lead is purged like a GDPR deletion: we keep nothing about a person the CRM dropped.
    return event.event_type == "privacy_deletion" or (event.event_type == "deleted" and is_lead_event(event))


def _is_echo(lead: Lead, event: Event) -> bool:
    key = seen_key(event.crm)
    previous = (lead.properties or {}).get(key) if key is not None else None
    return is_own_echo(event, previous)


def record_outcome_events(session: Session, events: Sequence[Event]) -> RecordResult:
    """Store the outcomes processed webhook events report (each CRM's rules in connectors/<crm>/outcomes.py, under
    the outcome definition in force)."""
    from storage.bands import outcome_rules

    by_crm, unresolved = outcomes_of_events(
        events, lambda crm, object_type, ids: association_events(session, crm, object_type, ids),
        outcome_rules(session))
    result = RecordResult(unresolved_deals=unresolved)
    for crm, outcomes in by_crm.items():
        recorded = record_outcomes(session, crm, outcomes)
        result.recorded += recorded.recorded
        result.duplicates += recorded.duplicates
        result.unknown_leads += recorded.unknown_leads
    return result


def forget_by_event(session: Session, event: Event, res: Resources | None) -> int | None:
    """Purge the person a privacy-deletion (or deletion) event names, database and Redis; return its lead id.

    The purge `leadbridge forget` does (storage.privacy), for the one record the CRM deleted: its lead, and its
    events even when no lead exists yet (a pending row must not bring the person back). The CRM record is gone,
    so there are no CRM fields to clear.
    """
    from storage.privacy import find_person, forget_person, stored_events

    if (event.crm, event.object_type) not in LEAD_KINDS:
        return None
    redis = res.redis if res else None
    if event.crm == "web":
        lead = session.scalars(select(Lead).where(Lead.external_id == event.object_id)).first()
    else:
        found = lead_id_by_record(session, event.crm, event.object_type, event.object_id)
        lead = session.get(Lead, found) if found is not None else None
    if lead is not None:
        lead_id = lead.id
        forget_lead(session, lead, redis=redis, actor=f"webhook:{event.crm}")
        return lead_id
    # No lead yet: the record's events may still wait in the inbox, or sit there as dead letters.
    person = find_person(session, records=[(event.crm, event.object_type, event.object_id)], other_leads=False)
    if stored_events(session, person, besides=event.dedupe_key):
        forget_person(session, person, redis=redis, actor=f"webhook:{event.crm}")
    return None


def enrich_new_leads(res: Resources, lead_ids: Sequence[int], attempt: int = 1) -> int:
    """First sight of a lead: read it (and its company) from the CRM once, cached in Redis for a while.

    HubSpot contacts are read for their identity, company and mapped properties (a creation webhook carries
    no properties); Salesforce Leads and Contacts only when the feature schema maps some of their fields,
    for those values. Returns how many leads it enriched. A transient failure (CRM 429/5xx, a dropped
    database connection) gives the claims back and tries again later (enrich_leads), so a person first seen
    during trouble is not left unenriched for a day; it never fails the caller, whose hand-off to scoring
    must go on.
    """
    enriched = 0
    ttl = int(res.settings.enrich_ttl_hours * 3600)
    for crm in ("hubspot", "salesforce"):
        connector = res.connector(crm)
        mapped = mapped_properties(res, crm)
        if connector is None or (crm == "salesforce" and not mapped):
            continue
        claimed: list[str] = []
        try:
            if crm == "hubspot":
                enriched += _enrich(res, connector, lead_ids, ttl, claimed, mapped)
            else:
                enriched += _enrich_records(res, connector, crm, lead_ids, ttl, claimed, mapped)
        except (TransientConnectorError, OperationalError) as exc:
            # Found by drills (c) and (d): the claims used to stay after a failure, so nobody tried again
            # until enrich_ttl_hours had passed. Another CRM's claims stay: its read went through.
            log.warning("enrich.failed", extra={"crm": crm, "error": type(exc).__name__, "attempt": attempt})
            if claimed:
                res.redis.delete(*claimed)
            if attempt < ENRICH_ATTEMPTS:
                delay = min(max(getattr(exc, "retry_after", None) or 2.0 ** attempt, 1.0), 300.0)
                enrich_leads.apply_async(args=[sorted(lead_ids)], kwargs={"attempt": attempt + 1}, countdown=delay)
        except ConnectorError as exc:  # auth or a refused request: trying again soon cannot help
            log.warning("enrich.failed", extra={"crm": crm, "error": type(exc).__name__})
    return enriched


def mapped_properties(res: Resources, crm: str) -> dict[str, list[str]]:
    """The properties the feature schema in force maps, per object of `crm` that enrichment reads."""
    schema = res.schema()
    return {obj: props for obj in feature_objects(crm) if (props := schema.properties_of(crm, obj))}


def can_enrich(res: Resources) -> bool:
    """Whether first-seen leads have something to read: HubSpot is configured, or Salesforce with mapped fields."""
    if res.connector("hubspot") is not None:
        return True
    return res.connector("salesforce") is not None and bool(mapped_properties(res, "salesforce"))


def _claimer(res: Resources, crm: str, ttl: int, claimed: list[str]) -> Any:
    def claim(refs: list[str]) -> list[str]:
        """The refs this call may enrich: not enriched (or being enriched) within the TTL; one round trip."""
        if not ttl or not refs:
            return refs
        keys = [ENRICHED_KEY.format(crm=crm, ref=ref) for ref in refs]
        pipe = res.redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, 1, nx=True, ex=ttl)
        won = pipe.execute()
        claimed.extend(key for key, ok in zip(keys, won) if ok)
        return [ref for ref, ok in zip(refs, won) if ok]

    return claim


def _values_of(item: Any, crm: str, lead_id: int, now: Any, row: Lead | None, events: list[Event],
               owners: list[str]) -> None:
    """A read's mapped values: an event at the record's modification time, kept on the lead row as well."""
    record_id = item.lead.crm_ids.get(crm, "")
    if not item.values or item.changed_at is None or not record_id:
        return
    # Never later than now: a clock ahead of ours must not make a read outrank webhooks still to come.
    at = min(item.changed_at, now)
    events.append(crm_values_event(crm, item.object_type, record_id, item.values, at, now))
    owners.append(str(lead_id))
    if row is not None:
        remember_crm_values(row, crm, item.object_type, record_id, item.values, at)


def _enrich(res: Resources, connector: Any, lead_ids: Sequence[int], ttl: int, claimed: list[str],
            mapped: dict[str, list[str]]) -> int:
    with res.db.session() as session:
        leads = session.scalars(select(Lead).where(Lead.id.in_(list(lead_ids)))).all()
        crm_ids = crm_ids_of(session, lead_ids)
        hubspot_ids = {lead.id: [row.object_id for row in crm_ids.get(lead.id, []) if row.crm == "hubspot"]
                       for lead in leads}
        by_hubspot = {hubspot_id: lead_id for lead_id, ids in hubspot_ids.items() for hubspot_id in ids}
        by_email = {lead.email: lead.id for lead in leads if not hubspot_ids[lead.id] and lead.email}

    claim = _claimer(res, "hubspot", ttl, claimed)
    todo = claim(list(by_hubspot))
    emails = claim(list(by_email))
    events: list[Event] = []
    owners: list[str] = []
    found = connector.read_leads(todo, mapped) if todo else []
    matches = connector.search_contacts([{"propertyName": "email", "operator": "IN", "values": emails}],
                                        limit=len(emails)) if emails else []
    enriched = 0
    now = utcnow()
    matched: dict[str, int] = {}  # contacts found by e-mail -> their lead: read for their mapped values below
    with res.db.session(write=True) as session, session.no_autoflush:
        # One query for the rows, not a get (and an autoflush of the previous row) per lead.
        rows = {row.id: row for row in session.scalars(select(Lead).where(Lead.id.in_(list(lead_ids))))}
        assigned: set[str] = set()
        for item in found:
            lead_id = by_hubspot.get(item.lead.crm_ids.get("hubspot", ""))
            if lead_id is not None:
                events.append(_enrichment_event(item.lead, item.account, now))
                owners.append(str(lead_id))
                row = rows.get(lead_id)
                _values_of(item, "hubspot", lead_id, now, row, events, owners)
                if row is not None:
                    enriched += 1
                    row.enriched_at = now
                    apply_enrichment(row, email=item.lead.email, first_name=item.lead.first_name,
                                     last_name=item.lead.last_name, title=item.lead.title, country=item.lead.country)
        for lead in matches:
            lead_id = by_email.get((lead.email or "").lower())
            hubspot_id = lead.crm_ids.get("hubspot")
            taken = lead_id_by_record(session, "hubspot", "contact", hubspot_id) if hubspot_id else None
            row = rows.get(lead_id) if lead_id is not None else None
            if row is not None and hubspot_id and taken is None and hubspot_id not in assigned:
                add_crm_id(session, row, "hubspot", "contact", hubspot_id)
                assigned.add(hubspot_id)  # not flushed yet (no_autoflush): the query above cannot see it
                matched[hubspot_id] = row.id
            if row is not None:
                enriched += 1
                row.enriched_at = now
        if matched and mapped:
            # A web visitor just linked to their contact: one more batched read, only when fields are mapped.
            for item in connector.read_leads(sorted(matched), mapped):
                lead_id = matched.get(item.lead.crm_ids.get("hubspot", ""))
                if lead_id is not None:
                    _values_of(item, "hubspot", lead_id, now, rows.get(lead_id), events, owners)
    if events:
        res.features.apply_many(events, owners)
    return enriched


def _enrich_records(res: Resources, connector: Any, crm: str, lead_ids: Sequence[int], ttl: int,
                    claimed: list[str], mapped: dict[str, list[str]]) -> int:
    """Read the mapped fields of first-seen leads' records in `crm` (Salesforce: one SOQL per object per 200)."""
    with res.db.session() as session:
        crm_ids = crm_ids_of(session, lead_ids)
    wanted = {(obj if crm != "salesforce" else obj.lower()) for obj in mapped}
    by_record = {row.object_id: lead_id for lead_id, rows in crm_ids.items() for row in rows
                 if row.crm == crm and row.object_type in wanted}
    todo = _claimer(res, crm, ttl, claimed)(sorted(by_record))
    if not todo:
        return 0
    found = connector.read_leads(todo, mapped)
    # Salesforce answers with 18-character ids; a record may be stored under its 15-character form.
    by_short = {record_id[:15]: lead_id for record_id, lead_id in by_record.items()}
    events: list[Event] = []
    owners: list[str] = []
    enriched = 0
    now = utcnow()
    with res.db.session(write=True) as session, session.no_autoflush:
        rows = {row.id: row for row in session.scalars(select(Lead).where(Lead.id.in_(list(lead_ids))))}
        for item in found:
            record_id = item.lead.crm_ids.get(crm, "")
            lead_id = by_record.get(record_id, by_short.get(record_id[:15]))
            row = rows.get(lead_id) if lead_id is not None else None
            if lead_id is None:
                continue
            _values_of(item, crm, lead_id, now, row, events, owners)
            if row is not None:
                enriched += 1
                row.enriched_at = now
                apply_enrichment(row, email=item.lead.email, first_name=item.lead.first_name,
                                 last_name=item.lead.last_name, title=item.lead.title, country=item.lead.country)
    if events:
        res.features.apply_many(events, owners)
    return enriched


def _enrichment_event(lead: object, account: object | None, now: object) -> Event:
    from core.records import Account as AccountRecord
    from core.records import Lead as LeadRecord

    assert isinstance(lead, LeadRecord)
    traits = {"email": lead.email, "jobtitle": lead.title, "country": lead.country}
    if isinstance(account, AccountRecord):
        traits.update({"company": account.name, "domain": account.domain, "industry": account.industry,
                       "numberofemployees": account.employees})
    return Event(source="enrichment", crm="hubspot", object_type="contact", object_id=lead.crm_ids.get("hubspot", ""),
                 event_type="identify", occurred_at=now, received_at=now,  # type: ignore[arg-type]
                 properties={"traits": {k: v for k, v in traits.items() if v not in (None, "")}},
                 dedupe_key=f"enrich:{lead.crm_ids.get('hubspot')}:{now}", email=lead.email)
