"""Writeback stage: coalesce dirty leads and accounts per CRM, write their fields in batches, within limits.

Leads and accounts go through the same outbox (dirty set, one flush at a time under a lease, in-flight
records, fingerprints of what was written, refused values set aside); each kind has keys of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import redis
from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from connectors.base import (
    GROUP_FIELD,
    TREND_VALUES,
    AuthConnectorError,
    ConnectorError,
    CrmConnector,
    TransientConnectorError,
    WriteResult,
    comparable_values,
    shown_values,
    with_group,
)
from core.bands import Cutoffs
from core.keys import (
    ACCOUNT_ASIDE_KEY,
    ACCOUNT_DIRTY_KEY,
    ACCOUNT_FLUSH_LOCK_KEY,
    ACCOUNT_INFLIGHT_KEY,
    ACCOUNT_VERSION_KEY,
    ACCOUNT_WRITTEN_KEY,
    DIRTY_KEY,
    FLUSH_LOCK_KEY,
    INFLIGHT_KEY,
    PAUSED_KEY,
    RECONCILED_KEY,
    WRITEBACK_ASIDE_KEY,
    WRITTEN_KEY,
)
from core.progress import record_progress
from core.records import Movement, utcnow
from core.values import text_problem
from storage.dead_letters import count_lead_failure, describe_error
from storage.leads import write_target_query, write_targets
from storage.models import Account, AccountCrmId, Lead, LeadCrmId, OutboxItem
from storage.pilots import GROUP_COLUMNS, GROUPS, join_groups, score_hidden
from storage.scores import MOVEMENT_COLUMNS
from tasks.bands import cutoffs_in_force
from tasks.isolation import is_transient
from tasks.resources import Resources, claim_repairs, resources

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


@dataclass(frozen=True, slots=True)
class Outbox:
    """One kind of scored record written to the CRMs: its Redis keys, how its values are read and written."""

    kind: str  # lead | account
    object_type: str  # outbox_items.object_type of a refused record
    dirty: str
    written: str
    inflight: str
    aside: str
    lock: str
    load: Callable[[Session, str, Sequence[int], Any], list[tuple[int, str, dict[str, Any]]]]
    write: Callable[[CrmConnector, Mapping[str, Mapping[str, Any]]], WriteResult]
    shows: Callable[[CrmConnector, Mapping[str, Mapping[str, Any]]], set[str]]


def lead_target_query(crm: str) -> Any:
    """write_target_query of scored leads with what their records show (see lead_shown_values)."""
    return join_groups(write_target_query(crm, Lead.score, Lead.grade, Lead.reasons, Lead.model_version,
                                          Lead.scored_at, *MOVEMENT_COLUMNS, *GROUP_COLUMNS)
                       .where(Lead.score.is_not(None)))


def lead_shown_values(row: Sequence[Any], cutoffs: Cutoffs | None = None) -> dict[str, Any]:
    """The values a lead's record shows, from a write_targets row of lead_target_query: its score fields (the tier
    by the band `cutoffs` in force, the score's movement), and in a pilot its group (a control lead's group alone
    while the pilot has not ended)."""
    score, grade, reasons, version, scored_at = row[2:7]
    movement = Movement(*row[7:11])  # MOVEMENT_COLUMNS
    group, pilot_status = row[11:]
    return with_group(shown_values(score, grade, reasons, version, scored_at, cutoffs, movement), group,
                      score_hidden(group, pilot_status))


def _lead_values(session: Session, crm: str, ids: Sequence[int], redis: Any
                 ) -> list[tuple[int, str, dict[str, Any]]]:
    """(lead id, CRM id, values shown) of the scored leads among `ids` that `crm` holds (its write target)."""
    # Both sides by their own index (lead_crm_ids.lead_id, the leads' key): given only one, PostgreSQL
    # hashed the records against a scan of every lead, each flush.
    query = lead_target_query(crm).where(LeadCrmId.lead_id.in_(ids), Lead.id.in_(ids))
    rows = write_targets(crm, session.execute(query))
    cutoffs = cutoffs_in_force(redis, session)  # once per batch
    return [(row[0], str(row[1]), lead_shown_values(row, cutoffs)) for row in rows]


def _account_values(session: Session, crm: str, ids: Sequence[int], redis: Any
                    ) -> list[tuple[int, str, dict[str, Any]]]:
    """(account id, CRM id, values shown) of the scored accounts among `ids` that `crm` holds."""
    rows = session.execute(
        select(Account.id, AccountCrmId.object_id, Account.score, Account.grade, Account.reasons,
               Account.scored_at)
        .join(AccountCrmId, AccountCrmId.account_id == Account.id)
        .where(Account.id.in_(ids), Account.score.is_not(None), AccountCrmId.crm == crm)
        .order_by(AccountCrmId.id)
    ).all()
    raw = redis.get(ACCOUNT_VERSION_KEY)
    version = raw.decode() if raw else "account:rules"
    # An account with several records in one CRM is written through its newest (ordered last, kept last).
    newest = {r.id: r for r in rows}
    cutoffs = cutoffs_in_force(redis, session)
    return [(r.id, str(r.object_id), shown_values(r.score, r.grade, r.reasons, version, r.scored_at, cutoffs))
            for r in newest.values()]


LEADS = Outbox("lead", "contact", DIRTY_KEY, WRITTEN_KEY, INFLIGHT_KEY, WRITEBACK_ASIDE_KEY, FLUSH_LOCK_KEY,
               _lead_values, lambda connector, updates: connector.write_fields(updates),
               lambda connector, updates: connector.shows_fields(updates))
# Accounts have keys of their own under another prefix: the lead keys hold lead ids, and a forgotten person's
# lead id is removed from every key that starts like them (storage.privacy.MEMBER_KEYS): never an account's.
ACCOUNTS = Outbox("account", "account", ACCOUNT_DIRTY_KEY, ACCOUNT_WRITTEN_KEY, ACCOUNT_INFLIGHT_KEY,
                  ACCOUNT_ASIDE_KEY, ACCOUNT_FLUSH_LOCK_KEY,
                  _account_values, lambda connector, updates: connector.write_account_fields(updates),
                  lambda connector, updates: connector.shows_account_fields(updates))
OUTBOXES = {outbox.kind: outbox for outbox in (LEADS, ACCOUNTS)}


@shared_task(name="tasks.writeback.flush", bind=True, max_retries=None, acks_late=True, ignore_result=True)
def flush(self: Any, crm: str, kind: str = "lead") -> int:
    """Write up to one vendor batch of dirty leads (or accounts) to `crm`; re-queued while more wait."""
    res = resources()
    outbox = OUTBOXES[kind]
    # One flush per CRM at a time (found by bench/e2e: two flushes, one writing a lead's first score and
    # one its enrichment re-score with the same values, each saw no fingerprint yet and both wrote it).
    # The holder re-queues itself while leads are dirty, so a flush that finds the lock taken just ends.
    started = time.monotonic()
    with lease(res.redis, outbox.lock.format(crm=crm), FLUSH_LEASE_SECONDS) as held:
        if not held:
            return 0
        try:
            written = flush_once(res, crm, outbox)
            if time.monotonic() - started > 1.0:
                log.warning("writeback.slow_flush %.2fs, %d written", time.monotonic() - started, written,
                            extra={"crm": crm})
        except TransientConnectorError as exc:
            # The leads went back to the dirty set; come back when the vendor says we may.
            raise self.retry(countdown=min(max(exc.retry_after or 1.0, 0.5), 300), max_retries=50) from None
        except OperationalError:
            raise self.retry(countdown=2, max_retries=50) from None  # the database is back in a moment
    if res.redis.scard(outbox.dirty.format(crm=crm)):
        if outbox is LEADS:
            flush.delay(crm)  # the message a lead flush always sent
        else:
            flush.delay(crm, kind)
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


def flush_once(res: Resources, crm: str, outbox: Outbox = LEADS) -> int:
    """Drain one batch: only the latest values, only if they differ from what was last written."""
    dirty = outbox.dirty.format(crm=crm)
    if res.redis.exists(PAUSED_KEY.format(crm=crm)):
        return 0
    connector = res.connector(crm)
    if connector is None:
        res.redis.delete(dirty)  # nothing configured for this CRM: nothing will ever be written
        return 0
    inflight_key = outbox.inflight.format(crm=crm)
    left = res.redis.hgetall(inflight_key)
    if left:
        settle_unconfirmed(res, crm, connector, {int(k): orjson.loads(v) for k, v in left.items()}, outbox)
    raw_ids = res.redis.spop(dirty, connector.write_batch) or []
    lead_ids = [int(i) for i in raw_ids]  # lead or account ids
    if not lead_ids:
        return 0
    written_key = outbox.written.format(crm=crm)
    aside_key = outbox.aside.format(crm=crm)
    try:
        with res.db.session() as session:
            rows = outbox.load(session, crm, lead_ids, res.redis)
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
    for lead_id, crm_id, values in rows:
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
    acked: dict[str, datetime] = {}

    def send(batch: Mapping[str, Mapping[str, Any]]) -> WriteResult:
        result = outbox.write(connector, batch)
        # The moment the CRM answered this call (isolating a refused record makes several calls per batch).
        at = utcnow()
        acked.update((crm_id, at) for crm_id in result.written)
        return result

    try:
        written, failed = ([], {})
        if sendable:
            written, failed = write_isolated(send, sendable)
    except TransientConnectorError:
        _settle(res, crm, outbox, dirty=sending, sent=sending)
        raise
    except AuthConnectorError as exc:
        _settle(res, crm, outbox, dirty=sending, sent=sending)
        res.redis.set(PAUSED_KEY.format(crm=crm), exc.vendor_message[:200], ex=PAUSE_SECONDS)
        _record(res, crm, outbox, prints, written=(), failed={}, error=f"paused: {exc.vendor_message}",
                status="failed")
        log.error("writeback.paused", extra={"crm": crm})
        return 0
    # Any other failure leaves the in-flight entries: whether the CRM took the batch is then unknown.
    failed = {**unusable, **failed}
    _settle(res, crm, outbox, written={prints[crm_id][0]: prints[crm_id][1] for crm_id in written},
            sent=sending, refused={prints[crm_id][0]: prints[crm_id][1] for crm_id in failed})
    _record(res, crm, outbox, prints, written=tuple(written), failed=failed, error=None, status="sent",
            acked=acked, updates=updates)
    if failed:
        refusals = {prints[crm_id][0]: (failed[crm_id], updates[crm_id]) for crm_id in failed}
        set_aside_writes(res, crm, refusals, outbox)
    record_progress(res.redis, "written", len(written))
    return len(written)


def write_isolated(write: Callable[[Mapping[str, Mapping[str, Any]]], WriteResult],
                   updates: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Write a batch; when the CRM refuses it as a whole, write halves until the refused records stand alone.

    HubSpot fails a whole batch update for one invalid value (400); a write can also fail on our side for
    one record's values. Either must not cost every other record in the batch its write. Returns the ids
    written and {id: reason} for those refused. Transient and auth errors propagate (nothing was written).
    """
    try:
        result = write(updates)
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
        done, refused = write_isolated(write, {i: updates[i] for i in half})
        written.extend(done)
        failed.update(refused)
    return written, failed


def set_aside_writes(res: Resources, crm: str, refused: Mapping[int, tuple[str, Mapping[str, Any]]],
                     outbox: Outbox = LEADS) -> None:
    """Dead letters for records the CRM refused (or whose values cannot be sent): retrying them cannot help.

    They stay aside (tasks.writeback skips them) until their values change or an admin retries them. An
    account's refusal is kept by its set-aside fingerprint and its outbox row (dead letters are per lead).
    """
    if outbox is not LEADS:
        log.error("writeback.dead_letter", extra={"crm": crm, outbox.kind + "s": sorted(refused)[:20],
                                                  "count": len(refused)})
        return
    with res.db.session(write=True) as session:
        for lead_id, (error, values) in refused.items():
            count_lead_failure(session, "writeback", lead_id, error[:2000], crm=crm, at_once=True,
                               max_attempts=res.settings.max_attempts,
                               payload={"values": {k: (v if isinstance(v, (int, float, bool)) or v is None else str(v))
                                                   for k, v in values.items()}})
    log.error("writeback.dead_letter", extra={"crm": crm, "leads": sorted(refused)[:20], "count": len(refused)})


def shown_values_problem(values: Mapping[str, Any]) -> str | None:
    """Why these values cannot go to a CRM (a score out of 0-100, text that is not storable), or None."""
    group = values.get(GROUP_FIELD)
    if group is not None and group not in GROUPS:
        return "group is not pilot or control"
    if set(values) == {GROUP_FIELD}:
        return None  # a held-back control lead: its group alone
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
    return movement_problem(values)


def movement_problem(values: Mapping[str, Any]) -> str | None:
    """Why a lead's movement values cannot go to a CRM (a previous score out of 0-100, an unknown trend), or None."""
    for name, low in (("previous_score", 0), ("score_change", -100)):
        value = values.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 100):
            return f"{name} is not a whole number from {low} to 100"
    if values.get("score_trend") not in (None, *TREND_VALUES):
        return f"score_trend is not one of {', '.join(TREND_VALUES)}"
    reason = values.get("score_change_reason")
    if reason is not None and (not isinstance(reason, str) or text_problem(reason, 255)):
        return "score_change_reason is not valid text"
    return None


def _settle(res: Resources, crm: str, outbox: Outbox, *, sent: Sequence[int],
            written: Mapping[int, str] | None = None, dirty: Sequence[int] = (),
            refused: Mapping[int, str] | None = None) -> None:
    """Record a batch's outcome in one step: fingerprints of what landed or was refused, dirty marks, in-flight
    entries cleared."""
    pipe = res.redis.pipeline(transaction=True)
    if written:
        pipe.hset(outbox.written.format(crm=crm), mapping=dict(written))
        pipe.hdel(outbox.aside.format(crm=crm), *written)
    if refused:
        pipe.hset(outbox.aside.format(crm=crm), mapping=dict(refused))
    if dirty:
        pipe.sadd(outbox.dirty.format(crm=crm), *dirty)
    if sent:
        pipe.hdel(outbox.inflight.format(crm=crm), *sent)
    _patiently(pipe.execute)


def settle_unconfirmed(res: Resources, crm: str, connector: CrmConnector,
                       entries: Mapping[int, Mapping[str, Any]], outbox: Outbox = LEADS) -> list[int]:
    """Read back records whose write may or may not have landed; keep those the CRM shows, re-mark the rest.

    `entries` maps lead (or account) ids to {"crm_id", "fp", "values"}. Returns the ids marked dirty again.
    A transient CRM error propagates (the entries stay for the next try).
    """
    try:
        shown = outbox.shows(connector, {str(e["crm_id"]): e["values"] for e in entries.values()})
    except TransientConnectorError:
        raise
    except ConnectorError:
        log.warning("writeback.readback_failed", extra={"crm": crm}, exc_info=True)
        shown = set()  # cannot tell: write them again, the write path deals with what the CRM refuses
    landed = {lead_id: str(e["fp"]) for lead_id, e in entries.items() if str(e["crm_id"]) in shown}
    again = [lead_id for lead_id in entries if lead_id not in landed]
    _settle(res, crm, outbox, sent=list(entries), written=landed, dirty=again)
    log.warning("writeback.unconfirmed_settled", extra={"crm": crm, "landed": len(landed), "again": len(again)})
    return again


def reconcile_writes(res: Resources, crm: str, *, settled: timedelta, window: timedelta,
                     limit: int = 20_000) -> list[int]:
    """Mark dirty the leads scored in `window` (and settled for `settled`) whose CRM fields lag their score.

    The dirty set and the fingerprints live in Redis; a score committed just as Redis went away could leave
    its mark unset (found by drill b). The database is the truth: compare it with what was last written.
    A lead with no fingerprint at all (its first mark lost, or Redis lost its data) is read back from the
    CRM: recorded if the CRM shows its values, re-marked if not, so nothing is written twice.
    """
    now = utcnow()
    with res.db.session() as session:
        rows = write_targets(crm, session.execute(
            lead_target_query(crm).where(Lead.scored_at >= now - window, Lead.scored_at < now - settled)
            .limit(limit)
        ))
        cutoffs = cutoffs_in_force(res.redis, session)
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
        values = lead_shown_values(row, cutoffs)
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


def write_latencies_ms(acked: Mapping[str, datetime], updates: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """Per record written: the CRM's acknowledgement time minus the creation time (scored_at) of the score sent."""
    out: list[int] = []
    for crm_id, at in acked.items():
        scored_at = (updates.get(crm_id) or {}).get("scored_at")
        if isinstance(scored_at, datetime):
            out.append(max(0, round((at - scored_at).total_seconds() * 1000)))
    return sorted(out)


def _record(res: Resources, crm: str, outbox: Outbox, prints: dict[str, tuple[int, str]], *,
            written: tuple[str, ...] | Any, failed: dict[str, str], error: str | None, status: str,
            acked: Mapping[str, datetime] | None = None,
            updates: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """One outbox row for the batch, plus a dead-letter row per record the vendor refused.

    The batch row's sent_at is when the CRM acknowledged its last call, and its payload's latency_ms holds,
    per record written, that acknowledgement minus the score's creation (the overview's writeback latency).
    """
    now = utcnow()
    payload: dict[str, Any] = {"records": len(prints), "written": len(written)}
    if acked and updates:
        payload["latency_ms"] = write_latencies_ms(acked, updates)
    rows = [{
        "target": crm, "kind": "fields", "object_type": "batch", "object_id": None, "lead_id": None,
        "payload": payload, "status": status if not failed else "partial",
        "attempts": 1, "error": error, "created_at": now, "updated_at": now,
        "sent_at": (max(acked.values()) if acked else now) if written else None,
    }]
    for crm_id, message in failed.items():
        rows.append({
            "target": crm, "kind": "fields", "object_type": outbox.object_type, "object_id": crm_id,
            "lead_id": prints.get(crm_id, (None, ""))[0] if outbox is LEADS else None, "payload": {},
            "status": "dead", "attempts": 1,
            "error": message[:2000], "created_at": now, "updated_at": now, "sent_at": None,
        })
    with res.db.session(write=True) as session:
        session.execute(OutboxItem.__table__.insert(), rows)
