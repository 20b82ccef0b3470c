"""Writeback stage: coalesce dirty leads per CRM and write their fields in batches, within rate limits."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import orjson
import redis
from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from connectors.base import AuthConnectorError, ConnectorError, TransientConnectorError, comparable_values
from core.keys import (
    DIRTY_KEY,
    FLUSH_LOCK_KEY,
    INFLIGHT_KEY,
    PAUSED_KEY,
    RECONCILED_KEY,
    WRITEBACK_ASIDE_KEY,
    WRITTEN_KEY,
)
from core.progress import record_progress
from core.records import utcnow
from core.values import text_problem
from storage.dead_letters import count_lead_failure, describe_error
from storage.models import Lead, OutboxItem
from tasks.isolation import is_transient
from tasks.resources import Resources, claim_repairs, resources
from tasks.score import CRM_ID_COLUMNS

log = logging.getLogger(__name__)

# A flush killed between its CRM call and recording the outcome leaves its entries in INFLIGHT_KEY; the next
# flush (which holds the lease, so that one is gone) reads those records back instead of guessing (drill a:
# guessing "not written" wrote the same values twice; guessing "written" could leave a record stale).
PAUSE_SECONDS = 300
# The lock is a lease, renewed every third of this while the flush runs: a flush killed holding it keeps the
# others out this long at most (drill a: a fixed 30 s lock meant 30 s without writes after a kill -9; the
# task time limit, 300 s, had meant five minutes).
FLUSH_LEASE_SECONDS = 6.0
REDIS_PATIENCE = 30.0  # seconds a flush waits for Redis to come back before giving up on its bookkeeping


@shared_task(name="tasks.writeback.flush", bind=True, max_retries=None, acks_late=True, ignore_result=True)
def flush(self: Any, crm: str) -> int:
    """Write up to one vendor batch of dirty leads to `crm`; re-queues itself while more are waiting."""
    res = resources()
    # One flush per CRM at a time (found by bench/e2e: two flushes, one writing a lead's first score and
    # one its enrichment re-score with the same values, each saw no fingerprint yet and both wrote it).
    # The holder re-queues itself while leads are dirty, so a flush that finds the lock taken just ends.
    started = time.monotonic()
    with lease(res.redis, FLUSH_LOCK_KEY.format(crm=crm), FLUSH_LEASE_SECONDS) as held:
        if not held:
            return 0
        try:
            written = flush_once(res, crm)
            if time.monotonic() - started > 1.0:
                log.warning("writeback.slow_flush %.2fs, %d written", time.monotonic() - started, written,
                            extra={"crm": crm})
        except TransientConnectorError as exc:
            # The leads went back to the dirty set; come back when the vendor says we may.
            raise self.retry(countdown=min(max(exc.retry_after or 1.0, 0.5), 300), max_retries=50) from None
        except OperationalError:
            raise self.retry(countdown=2, max_retries=50) from None  # the database is back in a moment
    if res.redis.scard(DIRTY_KEY.format(crm=crm)):
        flush.delay(crm)
    return written


@contextlib.contextmanager
def lease(client: redis.Redis, key: str, ttl: float) -> Iterator[bool]:
    """Hold the Redis lock `key` while the block runs, renewed every ttl/3 s; yields False if another holds it."""
    # The token is shared with the renewing thread (redis-py keeps it thread-local by default).
    lock = client.lock(key, timeout=ttl, blocking=False, thread_local=False)
    if not lock.acquire():
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(ttl / 3):
            try:
                lock.reacquire()
            except redis.RedisError:  # Redis is away or the lease lapsed: nothing left to renew
                log.warning("writeback.lease_lost", extra={"key": key})
                return

    renewer = threading.Thread(target=renew, name=f"lease {key}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        with contextlib.suppress(redis.RedisError):
            lock.release()


def fingerprint(values: dict[str, Any]) -> str:
    """A stable hash of what a CRM record shows (scored_at excluded: it changes on every score)."""
    shown = {k: v for k, v in values.items() if k != "scored_at"}
    return hashlib.sha1(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flush_once(res: Resources, crm: str) -> int:
    """Drain one batch: only the latest values, only if they differ from what was last written."""
    dirty = DIRTY_KEY.format(crm=crm)
    if res.redis.exists(PAUSED_KEY.format(crm=crm)):
        return 0
    connector = res.connector(crm)
    if connector is None:
        res.redis.delete(dirty)  # nothing configured for this CRM: nothing will ever be written
        return 0
    inflight_key = INFLIGHT_KEY.format(crm=crm)
    left = res.redis.hgetall(inflight_key)
    if left:
        settle_unconfirmed(res, crm, connector, {int(k): orjson.loads(v) for k, v in left.items()})
    raw_ids = res.redis.spop(dirty, connector.write_batch) or []
    lead_ids = [int(i) for i in raw_ids]
    if not lead_ids:
        return 0
    column = getattr(Lead, CRM_ID_COLUMNS[crm])
    written_key = WRITTEN_KEY.format(crm=crm)
    aside_key = WRITEBACK_ASIDE_KEY.format(crm=crm)
    try:
        with res.db.session() as session:
            rows = session.execute(
                select(Lead.id, column, Lead.score, Lead.grade, Lead.reasons, Lead.model_version, Lead.scored_at)
                .where(Lead.id.in_(lead_ids), Lead.score.is_not(None), column.is_not(None))
            ).all()
        pipe = res.redis.pipeline(transaction=False)
        pipe.hmget(written_key, lead_ids)
        pipe.hmget(aside_key, lead_ids)
        written_before, set_aside = pipe.execute()
    except BaseException:
        # Found by drill (d): leads popped and then lost to a dropped database connection were never written.
        _patiently(lambda: res.redis.sadd(dirty, *lead_ids))
        raise
    previous = dict(zip(lead_ids, written_before))
    refused_before = dict(zip(lead_ids, set_aside))
    updates: dict[str, dict[str, Any]] = {}
    prints: dict[str, tuple[int, str]] = {}
    unusable: dict[str, str] = {}
    for lead_id, crm_id, score, grade, reasons, model_version, scored_at in rows:
        values = shown_values(score, grade, reasons, model_version, scored_at)
        fp = fingerprint(values)
        old = previous.get(lead_id)
        if old is not None and old.decode() == fp:
            continue  # the CRM already shows exactly this
        refused = refused_before.get(lead_id)
        if refused is not None and refused.decode() == fp:
            continue  # these very values are a dead letter: set aside until they change or an admin retries
        updates[str(crm_id)] = values
        prints[str(crm_id)] = (lead_id, fp)
        problem = shown_values_problem(values)
        if problem:
            unusable[str(crm_id)] = f"values cannot be sent: {problem}"
    # Handled, whether or not anything needed writing: what stall detection watches (services.pipeline).
    record_progress(res.redis, "writeback", len(lead_ids))
    if not updates:
        return 0
    sending = [lead_id for lead_id, _ in prints.values()]
    _patiently(lambda: res.redis.hset(inflight_key, mapping={
        lead_id: orjson.dumps({"crm_id": crm_id, "fp": fp, "values": comparable_values(updates[crm_id])},
                              default=str)
        for crm_id, (lead_id, fp) in prints.items()}))
    sendable = {crm_id: values for crm_id, values in updates.items() if crm_id not in unusable}
    try:
        written, failed = write_isolated(connector, sendable) if sendable else ([], {})
    except TransientConnectorError:
        _settle(res, crm, dirty=sending, sent=sending)
        raise
    except AuthConnectorError as exc:
        _settle(res, crm, dirty=sending, sent=sending)
        res.redis.set(PAUSED_KEY.format(crm=crm), exc.vendor_message[:200], ex=PAUSE_SECONDS)
        _record(res, crm, prints, written=(), failed={}, error=f"paused: {exc.vendor_message}", status="failed")
        log.error("writeback.paused", extra={"crm": crm})
        return 0
    # Any other failure leaves the in-flight entries: whether the CRM took the batch is then unknown.
    failed = {**unusable, **failed}
    _settle(res, crm, written={prints[crm_id][0]: prints[crm_id][1] for crm_id in written}, sent=sending,
            refused={prints[crm_id][0]: prints[crm_id][1] for crm_id in failed})
    _record(res, crm, prints, written=tuple(written), failed=failed, error=None, status="sent")
    if failed:
        set_aside_writes(res, crm, {prints[crm_id][0]: (failed[crm_id], updates[crm_id]) for crm_id in failed})
    record_progress(res.redis, "written", len(written))
    return len(written)


def write_isolated(connector: Any, updates: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Write a batch; when the CRM refuses it as a whole, write halves until the refused records stand alone.

    HubSpot fails a whole batch update for one invalid value (400); a write can also fail on our side for
    one record's values. Either must not cost every other record in the batch its write. Returns the ids
    written and {id: reason} for those refused. Transient and auth errors propagate (nothing was written).
    """
    try:
        result = connector.write_fields(updates)
        return list(result.written), dict(result.failed)
    except (TransientConnectorError, AuthConnectorError):
        raise
    except ConnectorError as exc:
        error = exc.vendor_message or str(exc)
    except Exception as exc:  # noqa: BLE001 - one record's values may break the call itself
        if is_transient(exc):
            raise
        error = describe_error(exc)
    ids = list(updates)
    if len(ids) == 1:
        return [], {ids[0]: error}
    middle = len(ids) // 2
    written: list[str] = []
    failed: dict[str, str] = {}
    for half in (ids[:middle], ids[middle:]):
        done, refused = write_isolated(connector, {i: updates[i] for i in half})
        written.extend(done)
        failed.update(refused)
    return written, failed


def set_aside_writes(res: Resources, crm: str, refused: Mapping[int, tuple[str, Mapping[str, Any]]]) -> None:
    """Dead letters for records the CRM refused (or whose values cannot be sent): retrying them cannot help.

    They stay aside (tasks.writeback skips them) until their values change or an admin retries them.
    """
    with res.db.session(write=True) as session:
        for lead_id, (error, values) in refused.items():
            count_lead_failure(session, "writeback", lead_id, error[:2000], crm=crm, at_once=True,
                               max_attempts=res.settings.max_attempts,
                               payload={"values": {k: (v if isinstance(v, (int, float, bool)) or v is None else str(v))
                                                   for k, v in values.items()}})
    log.error("writeback.dead_letter", extra={"crm": crm, "leads": sorted(refused)[:20], "count": len(refused)})


def shown_values_problem(values: Mapping[str, Any]) -> str | None:
    """Why these values cannot go to a CRM (a score out of 0-100, text that is not storable), or None."""
    score = values.get("score")
    if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 100:
        return "score is not a whole number from 0 to 100"
    for name in ("grade", "tier", "model_version"):
        value = values.get(name)
        if value is not None and (not isinstance(value, str) or text_problem(value, 200)):
            return f"{name} is not valid text"
    reasons = values.get("reasons") or []
    if not isinstance(reasons, list) or any(not isinstance(r, str) or text_problem(r, 1000) for r in reasons):
        return "reasons are not valid text"
    return None


def _settle(res: Resources, crm: str, *, sent: Sequence[int], written: Mapping[int, str] | None = None,
            dirty: Sequence[int] = (), refused: Mapping[int, str] | None = None) -> None:
    """Record a batch's outcome in one step: fingerprints of what landed or was refused, dirty marks, in-flight
    entries cleared."""
    pipe = res.redis.pipeline(transaction=True)
    if written:
        pipe.hset(WRITTEN_KEY.format(crm=crm), mapping=dict(written))
        pipe.hdel(WRITEBACK_ASIDE_KEY.format(crm=crm), *written)
    if refused:
        pipe.hset(WRITEBACK_ASIDE_KEY.format(crm=crm), mapping=dict(refused))
    if dirty:
        pipe.sadd(DIRTY_KEY.format(crm=crm), *dirty)
    if sent:
        pipe.hdel(INFLIGHT_KEY.format(crm=crm), *sent)
    _patiently(pipe.execute)


def settle_unconfirmed(res: Resources, crm: str, connector: Any, entries: Mapping[int, Mapping[str, Any]]) -> list[int]:
    """Read back records whose write may or may not have landed; keep those the CRM shows, re-mark the rest.

    `entries` maps lead ids to {"crm_id", "fp", "values"}. Returns the lead ids marked dirty again.
    A transient CRM error propagates (the entries stay for the next try).
    """
    try:
        shown = connector.shows_fields({str(e["crm_id"]): e["values"] for e in entries.values()})
    except TransientConnectorError:
        raise
    except ConnectorError:
        log.warning("writeback.readback_failed", extra={"crm": crm}, exc_info=True)
        shown = set()  # cannot tell: write them again, the write path deals with what the CRM refuses
    landed = {lead_id: str(e["fp"]) for lead_id, e in entries.items() if str(e["crm_id"]) in shown}
    again = [lead_id for lead_id in entries if lead_id not in landed]
    _settle(res, crm, sent=list(entries), written=landed, dirty=again)
    log.warning("writeback.unconfirmed_settled", extra={"crm": crm, "landed": len(landed), "again": len(again)})
    return again


def shown_values(score: int, grade: str | None, reasons: list[str] | None, model_version: str | None,
                 scored_at: Any) -> dict[str, Any]:
    """The field values a CRM record shows for a lead's current score."""
    return {"score": score, "grade": grade, "reasons": reasons or [], "tier": tier_of(score),
            "model_version": model_version, "scored_at": scored_at}


def reconcile_writes(res: Resources, crm: str, *, settled: timedelta, window: timedelta,
                     limit: int = 20_000) -> list[int]:
    """Mark dirty the leads scored in `window` (and settled for `settled`) whose CRM fields lag their score.

    The dirty set and the fingerprints live in Redis; a score committed just as Redis went away could leave
    its mark unset (found by drill b). The database is the truth: compare it with what was last written.
    A lead with no fingerprint at all (its first mark lost, or Redis lost its data) is read back from the
    CRM: recorded if the CRM shows its values, re-marked if not, so nothing is written twice.
    """
    column = getattr(Lead, CRM_ID_COLUMNS[crm])
    now = utcnow()
    with res.db.session() as session:
        rows = session.execute(
            select(Lead.id, column, Lead.score, Lead.grade, Lead.reasons, Lead.model_version, Lead.scored_at)
            .where(column.is_not(None), Lead.score.is_not(None), Lead.scored_at >= now - window,
                   Lead.scored_at < now - settled)
            .limit(limit)
        ).all()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    pipe = res.redis.pipeline(transaction=False)
    pipe.hmget(WRITTEN_KEY.format(crm=crm), ids)
    pipe.hmget(INFLIGHT_KEY.format(crm=crm), ids)
    written, inflight = pipe.execute()
    behind: list[int] = []
    unknown: dict[int, dict[str, Any]] = {}
    for row, old, flying in zip(rows, written, inflight):
        values = shown_values(*row[2:])
        if old is not None and old.decode() != fingerprint(values):
            behind.append(row[0])
        elif old is None and flying is None:  # in flight: the flush that sent it settles it
            unknown[row[0]] = {"crm_id": row[1], "fp": fingerprint(values), "values": comparable_values(values)}
    # Once per lead per while: a record the vendor refuses (dead letter) must not be retried on every sweep.
    claimed = claim_repairs(res.redis, [RECONCILED_KEY.format(crm=crm, lead=lead_id)
                                        for lead_id in [*behind, *unknown]], settled)
    fresh = {lead_id for lead_id, ok in zip([*behind, *unknown], claimed) if ok}
    behind = [lead_id for lead_id in behind if lead_id in fresh]
    unknown = {lead_id: entry for lead_id, entry in unknown.items() if lead_id in fresh}
    connector = res.connector(crm)
    if unknown and connector is not None:
        try:
            behind.extend(settle_unconfirmed(res, crm, connector, unknown))
        except TransientConnectorError:
            log.warning("writeback.readback_deferred", extra={"crm": crm})  # the next sweep tries again
            for lead_id in unknown:
                res.redis.delete(RECONCILED_KEY.format(crm=crm, lead=lead_id))
    if behind:
        res.redis.sadd(DIRTY_KEY.format(crm=crm), *behind)
        log.warning("writeback.reconciled %d leads", len(behind), extra={"crm": crm})
    return sorted(behind)


def _patiently(record: Callable[[], Any], patience: float = REDIS_PATIENCE) -> Any:
    """Run a Redis write that must not be lost, waiting out a Redis restart (up to `patience` seconds).

    Found by drill (b): a batch written to the CRM just as Redis went away lost its fingerprints (and a
    refused batch its dirty marks), so the same values were written again later, or never.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            return record()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def tier_of(score: int | None) -> str | None:
    """Priority tier shown next to the score: hot (>= 75), warm (>= 40), cold."""
    if score is None:
        return None
    return "hot" if score >= 75 else "warm" if score >= 40 else "cold"


def _record(res: Resources, crm: str, prints: dict[str, tuple[int, str]], *, written: tuple[str, ...] | Any,
            failed: dict[str, str], error: str | None, status: str) -> None:
    """One outbox row for the batch, plus a dead-letter row per record the vendor refused."""
    now = utcnow()
    rows = [{
        "target": crm, "kind": "fields", "object_type": "batch", "object_id": None, "lead_id": None,
        "payload": {"records": len(prints), "written": len(written)}, "status": status if not failed else "partial",
        "attempts": 1, "error": error, "created_at": now, "updated_at": now, "sent_at": now if written else None,
    }]
    for crm_id, message in failed.items():
        rows.append({
            "target": crm, "kind": "fields", "object_type": "contact", "object_id": crm_id,
            "lead_id": prints.get(crm_id, (None, ""))[0], "payload": {}, "status": "dead", "attempts": 1,
            "error": message[:2000], "created_at": now, "updated_at": now, "sent_at": None,
        })
    with res.db.session(write=True) as session:
        session.execute(OutboxItem.__table__.insert(), rows)
