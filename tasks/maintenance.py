"""Periodic upkeep run by beat: inbox sweeper, decay re-scoring, retention purge, paused writebacks, measurements."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import delete

from core.keys import DIRTY_KEY, ENRICHED_KEY, REENRICHED_KEY, RESCORED_KEY
from core.records import utcnow
from storage import measurements
from storage.inbox import BACKLOG_CAP, backlog, mark_enqueued, stale_pending
from storage.models import InboxEvent
from storage.scores import leads_behind_their_events, leads_moving_before, leads_scored_before, set_trends
from tasks.resources import claim_repairs, resources
from tasks.schedule import periodic

log = logging.getLogger(__name__)

SWEEP_BATCH = 100  # the size of a webhook batch, so a swept task costs what a delivered one does
SWEEP_LIMIT = 20_000
DECAY_BATCH = 200
DECAY_LIMIT = 20_000
SETTLE_LIMIT = 20_000  # leads whose trend settles in one sweep (the rest in the next)
RESCORE_WINDOW = timedelta(minutes=15)  # how far back the sweeper looks for leads a lost score task left behind


@periodic("tasks.maintenance.sweep_inbox", every=15.0)
def sweep_inbox() -> int:
    """Re-enqueue inbox rows not processed in time (a lost message, a dead worker, a restarted Redis)."""
    from tasks.ingest import process_events

    res = resources()
    with res.db.session(write=True) as session:
        ids = stale_pending(session, timedelta(seconds=res.settings.inbox_sweep_after), SWEEP_LIMIT)
        for start in range(0, len(ids), SWEEP_BATCH):
            process_events.apply_async(kwargs={"ids": ids[start : start + SWEEP_BATCH]})
        mark_enqueued(session, ids)
    if ids:
        log.warning("inbox.swept %d rows", len(ids))
    rescore_lost(res)
    reenrich_lost(res)
    rewrite_lost(res)
    return len(ids)


def rewrite_lost(res: Any) -> int:
    """Mark for writeback the leads whose stored score never reached a configured CRM, and kick the writer."""
    from tasks.writeback import flush, reconcile_writes

    wait = timedelta(seconds=res.settings.inbox_sweep_after)
    marked = 0
    for crm in ("hubspot", "salesforce"):
        if res.connector(crm) is None:
            continue
        behind = reconcile_writes(res, crm, settled=wait, window=RESCORE_WINDOW, limit=SWEEP_LIMIT)
        if behind:
            flush.delay(crm)
            marked += len(behind)
    return marked


def rescore_lost(res: Any) -> int:
    """Re-score leads whose score task was lost after their events were ingested (found by the drills)."""
    from tasks.score import score_leads

    wait = timedelta(seconds=res.settings.inbox_sweep_after)
    now = utcnow()
    with res.db.session() as session:
        ids = leads_behind_their_events(session, processed_before=now - wait, received_since=now - RESCORE_WINDOW,
                                        limit=SWEEP_LIMIT)
    if not ids:
        return 0
    # One re-score per lead per while: under a backlog the normal score task may simply not have run yet.
    claimed = claim_repairs(res.redis, [RESCORED_KEY.format(lead=lead_id) for lead_id in ids], wait)
    ids = [lead_id for lead_id, fresh in zip(ids, claimed) if fresh]
    for start in range(0, len(ids), DECAY_BATCH):
        score_leads.apply_async(args=[ids[start : start + DECAY_BATCH]], kwargs={"trigger": "sweep"})
    if ids:
        log.warning("score.swept %d leads", len(ids))
    return len(ids)


def reenrich_lost(res: Any) -> int:
    """Enrich CRM leads whose first-sight enrichment task was lost (found by drill b: a Redis restart)."""
    from sqlalchemy import select

    from storage.models import Lead, LeadCrmId
    from tasks.ingest import enrich_leads

    if res.connector("hubspot") is None:
        return 0
    wait = timedelta(seconds=res.settings.inbox_sweep_after)
    now = utcnow()
    with res.db.session() as session:
        rows = session.execute(select(Lead.id, LeadCrmId.object_id).join(
            LeadCrmId, LeadCrmId.lead_id == Lead.id).where(
            LeadCrmId.crm == "hubspot", Lead.enriched_at.is_(None), Lead.created_at < now - wait,
            Lead.created_at >= now - RESCORE_WINDOW).limit(SWEEP_LIMIT)).all()
    if not rows:
        return 0
    claimed = claim_repairs(res.redis, [REENRICHED_KEY.format(lead=lead_id) for lead_id, _ in rows], wait)
    fresh = [(lead_id, hubspot_id) for (lead_id, hubspot_id), ok in zip(rows, claimed) if ok]
    if not fresh:
        return 0
    # A claim left by an enrichment that died half-way would make the retry skip the lead.
    res.redis.delete(*[ENRICHED_KEY.format(crm="hubspot", ref=hubspot_id) for _, hubspot_id in fresh])
    ids = [lead_id for lead_id, _ in fresh]
    for start in range(0, len(ids), DECAY_BATCH):
        enrich_leads.apply_async(args=[ids[start : start + DECAY_BATCH]])
    log.warning("enrich.swept %d leads", len(ids))
    return len(ids)


@periodic("tasks.maintenance.rescore_decayed", every=600.0)
def rescore_decayed() -> int:
    """Re-score leads not scored for a while, so a score falls when interest cools (windows expire)."""
    from tasks.score import score_leads

    res = resources()
    cutoff = utcnow() - timedelta(hours=res.settings.decay_rescore_hours)
    with res.db.session() as session:
        ids = leads_scored_before(session, cutoff, DECAY_LIMIT)
    for start in range(0, len(ids), DECAY_BATCH):
        score_leads.apply_async(args=[ids[start : start + DECAY_BATCH]], kwargs={"trigger": "decay"})
    return len(ids)


@periodic("tasks.maintenance.settle_trends", every=300.0)
def settle_trends() -> int:
    """Turn trends steady once the last score change has left the trend window (see settle_lead_trends)."""
    return settle_lead_trends(resources())


def settle_lead_trends(res: Any) -> int:
    """Turn a lead's trend steady once its last score change has left the trend window, and write it back.

    Time alone changes a trend this one way (scoring.movement): one write per score change at most, never a
    write per lead per tick. Returns how many leads settled.
    """
    from scoring.movement import STEADY
    from tasks.score import add_dirty, mark_dirty, trend_rule
    from tasks.writeback import flush

    rule = trend_rule(res.settings)
    now = utcnow()
    with res.db.session(write=True) as session:
        moving = leads_moving_before(session, rule.settled_before(now), STEADY, SETTLE_LIMIT)
        settled = {lead_id: (before, after.trend) for lead_id, before in moving
                   if (after := rule.settle(before, now)).trend != before.trend and after.trend is not None}
        set_trends(session, settled)
        marked = mark_dirty(res, session, sorted(settled))
    if marked:
        add_dirty(res, marked)  # again once committed: a flush that took the first mark read the old trend
        for crm in marked:
            flush.delay(crm)
    return len(settled)


@periodic("tasks.maintenance.purge_old_events", every=3600.0)
def purge_old_events() -> int:
    """Delete processed raw inbox events older than the retention period (pending ones are kept)."""
    res = resources()
    cutoff = utcnow() - timedelta(days=res.settings.retention_days)
    with res.db.session(write=True) as session:
        result = session.execute(
            delete(InboxEvent).where(InboxEvent.received_at < cutoff, InboxEvent.status != "pending")
        )
    return int(result.rowcount or 0)


@periodic("tasks.maintenance.flush_writebacks", every=30.0)
def flush_writebacks() -> int:
    """Kick writeback for CRMs with dirty leads or accounts (after a pause or a lost message)."""
    from tasks.writeback import ACCOUNTS, flush

    res = resources()
    kicked = 0
    for crm in ("hubspot", "salesforce"):
        if res.redis.scard(DIRTY_KEY.format(crm=crm)):
            flush.delay(crm)
            kicked += 1
        if res.redis.scard(ACCOUNTS.dirty.format(crm=crm)):
            flush.delay(crm, ACCOUNTS.kind)
            kicked += 1
    return kicked


# The overview's charts: a row per 30 s, merged into hour rows (and expired) hourly.
@periodic("tasks.maintenance.record_measurements", every=30.0)
def record_measurements() -> int:
    """Record the pipeline's figures for each settled 30-second period not recorded yet (the overview's charts)."""
    res = resources()
    write_backlog = sum(int(res.redis.scard(DIRTY_KEY.format(crm=crm))) for crm in ("hubspot", "salesforce"))
    with res.db.session() as session:  # reads only: SQLite's writer lock is taken for the insert alone
        # Capped: under a deep backlog an exact count would visit every waiting row every 30 s.
        waiting = backlog(session, cap=BACKLOG_CAP)
        rows = measurements.slot_rows(session, utcnow(), backlog=waiting, write_backlog=write_backlog)
    with res.db.session(write=True) as session:
        return measurements.insert_slots(session, rows)


@periodic("tasks.maintenance.downsample_measurements", every=3600.0)
def downsample_measurements() -> dict[str, int]:
    """Merge 30-second measurements older than the minute retention into hour rows; drop hour rows past theirs."""
    res = resources()
    now = utcnow()
    with res.db.session(write=True) as session:
        merged = measurements.downsample(session, now - timedelta(hours=res.settings.measurements_minute_hours))
        purged = measurements.purge(session, now - timedelta(days=res.settings.measurements_hour_days))
    return {"merged": merged, "purged": purged}
