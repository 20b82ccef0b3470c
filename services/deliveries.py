"""Deliveries: the inbox (events received) and the outbox (CRM and Slack writes), filters and replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from redis import Redis
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from core.keys import DIRTY_KEY, WRITTEN_KEY
from core.records import utcnow
from services import OperationError, clean_text
from storage.audit import record
from storage.inbox import mark_enqueued
from storage.models import InboxEvent, OutboxItem, Source
from tasks.names import ACTION_TASK, INGEST_TASK, WRITEBACK_TASK

INBOX_STATUSES = ("pending", "done", "ignored", "failed", "dead", "discarded")
OUTBOX_STATUSES = ("pending", "sent", "partial", "skipped", "failed", "dead")

CRMS = ("hubspot", "salesforce")
REPLAY_BATCH = 100  # a webhook batch's size, so a replayed task costs what a delivered one does
MAX_REPLAY = 1000


@dataclass(frozen=True)
class Page:
    """One page of rows and how many match in all."""

    rows: list[Any]
    total: int
    limit: int
    offset: int


def paginate(session: Session, query: Select[Any], order_by: Sequence[Any], limit: int, offset: int) -> Page:
    """The page of `query`'s rows at `offset` in `order_by` order, and how many rows match in all."""
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = list(session.scalars(query.order_by(*order_by).limit(limit).offset(offset)))
    return Page(rows, total, limit, offset)


def _select_status(model: type[InboxEvent] | type[OutboxItem], status: str | None,
                   allowed: tuple[str, ...]) -> Select[Any]:
    """Rows of `model`, only those in `status` when one is given (it must be one of `allowed`)."""
    if not status:
        return select(model)
    if status not in allowed:
        raise OperationError(f"status must be one of {', '.join(allowed)}, not {status!r}")
    return select(model).where(model.status == status)


def list_inbox(
    session: Session, *, status: str | None = None, source_id: int | None = None, search: str | None = None,
    limit: int = 50, offset: int = 0,
) -> Page:
    """Inbox rows newest first; `search` matches the CRM object id exactly or the e-mail by prefix."""
    query = _select_status(InboxEvent, status, INBOX_STATUSES)
    if source_id is not None:
        query = query.where(InboxEvent.source_id == source_id)
    text = clean_text(search, "search", max_length=320, required=False)
    if text:
        query = query.where(or_(InboxEvent.object_id == text[:64],
                                InboxEvent.email.startswith(text.lower(), autoescape=True)))
    return paginate(session, query, [InboxEvent.id.desc()], limit, offset)


def list_outbox(
    session: Session, *, status: str | None = None, target: str | None = None, search: str | None = None,
    limit: int = 50, offset: int = 0,
) -> Page:
    """Outbox rows newest first (status "dead" is the dead letter, with the vendor's message in `error`)."""
    query = _select_status(OutboxItem, status, OUTBOX_STATUSES)
    if target:
        if target not in ("hubspot", "salesforce", "slack"):
            raise OperationError(f"target must be hubspot, salesforce or slack, not {target!r}")
        query = query.where(OutboxItem.target == target)
    text = clean_text(search, "search", max_length=64, required=False)
    if text:
        query = query.where(OutboxItem.object_id == text)
    return paginate(session, query, [OutboxItem.id.desc()], limit, offset)


def source_names(session: Session) -> dict[int, str]:
    """source id -> name, for labelling inbox rows."""
    return {i: n for i, n in session.execute(select(Source.id, Source.name))}


def inbox_counts(session: Session) -> dict[str, int]:
    """Inbox rows per status."""
    return {s: int(c) for s, c in session.execute(select(InboxEvent.status, func.count()).group_by(InboxEvent.status))}


def outbox_counts(session: Session) -> dict[str, int]:
    """Outbox rows per status."""
    return {s: int(c) for s, c in session.execute(select(OutboxItem.status, func.count()).group_by(OutboxItem.status))}


def _ids(ids: Sequence[int]) -> list[int]:
    unique = sorted({int(i) for i in ids if 1 <= int(i) <= 2**62})
    if not unique:
        raise OperationError("choose at least one delivery to replay")
    if len(unique) > MAX_REPLAY:
        raise OperationError(f"replay at most {MAX_REPLAY} deliveries at a time")
    return unique


def replay_inbox(session: Session, actor: str, ids: Sequence[int]) -> list[int]:
    """Set inbox rows back to pending; returns the ids. Call `enqueue_ingest` with them after the commit.

    Replaying is safe for any row: ingest resolves leads idempotently and skips rows already done.
    """
    wanted = _ids(ids)
    rows = session.execute(select(InboxEvent.id, InboxEvent.status).where(InboxEvent.id.in_(wanted))
                           .order_by(InboxEvent.id)).all()
    found = [row.id for row in rows]
    if not found:
        raise OperationError("none of those inbox rows exist", 404, "not_found")
    was: dict[str, int] = {}
    for row in rows:
        was[row.status] = was.get(row.status, 0) + 1
    session.execute(update(InboxEvent).where(InboxEvent.id.in_(found)).values(status="pending", error=None))
    mark_enqueued(session, found, utcnow())
    record(session, actor=actor, action="delivery.replay_inbox", target=f"inbox:{len(found)} rows",
           before={"status": ", ".join(f"{status} ({n})" for status, n in sorted(was.items()))},
           after={"status": f"pending ({len(found)})", "ids": found[:100], "count": len(found)})
    return found


def enqueue_ingest(celery: Celery, ids: Sequence[int]) -> bool:
    """Hand replayed rows to the ingest stage (after they are committed, or a fast worker would skip them).

    Returns False when the broker is unreachable; the rows stay pending and the sweeper re-sends them.
    """
    try:
        for start in range(0, len(ids), REPLAY_BATCH):
            celery.send_task(INGEST_TASK, kwargs={"ids": list(ids[start:start + REPLAY_BATCH])}, ignore_result=True)
    except Exception:  # noqa: BLE001 - broker down: the committed pending rows are the durable copy
        return False
    return True


def replay_outbox(session: Session, redis: Redis, actor: str, ids: Sequence[int]) -> dict[str, list[int]]:
    """Queue the leads of failed CRM writes for writing again; returns {crm: lead ids}. Call `enqueue_writeback`
    after the commit.

    The writeback stage writes a lead's *current* values, so a replay never sends stale data. A lead's last
    written fingerprint is forgotten so the write is not skipped as "unchanged". The dead-letter row stays as
    the record of the failure, marked with when it was replayed.
    """
    wanted = _ids(ids)
    rows = list(session.scalars(select(OutboxItem).where(OutboxItem.id.in_(wanted)).order_by(OutboxItem.id)))
    if not rows:
        raise OperationError("none of those outbox rows exist", 404, "not_found")
    unusable = [r.id for r in rows if r.target not in CRMS or r.lead_id is None or r.kind == "action"]
    if unusable:
        raise OperationError(f"row(s) {', '.join(map(str, unusable[:10]))} cannot be replayed: only CRM writes of one "
                             "lead can (a batch summary or a Slack alert cannot; rule actions replay on their own)")
    leads: dict[str, list[int]] = {}
    now = utcnow()
    for row in rows:
        crm_leads = leads.setdefault(row.target, [])
        if row.lead_id not in crm_leads:
            crm_leads.append(row.lead_id)  # type: ignore[arg-type]
        row.payload = {**(row.payload or {}), "replayed_at": now.isoformat(), "replayed_by": actor}
    pipe = redis.pipeline()
    for crm, lead_ids in leads.items():
        pipe.hdel(WRITTEN_KEY.format(crm=crm), *lead_ids)
        pipe.sadd(DIRTY_KEY.format(crm=crm), *lead_ids)
    pipe.execute()
    record(session, actor=actor, action="delivery.replay_outbox", target=f"outbox:{len(rows)} rows",
           after={"ids": [r.id for r in rows][:100], "leads": {crm: ids[:100] for crm, ids in leads.items()}})
    return leads


def enqueue_writeback(celery: Celery, crms: Sequence[str]) -> bool:
    """Ask the writeback stage to drain the given CRMs' queues now (False when the broker is unreachable)."""
    try:
        for crm in crms:
            celery.send_task(WRITEBACK_TASK, args=[crm], ignore_result=True)
    except Exception:  # noqa: BLE001 - broker down: the leads stay dirty; the next score or flush writes them
        return False
    return True


def split_actions(session: Session, ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """(rule-action rows, other rows) among outbox `ids`: the two replay differently."""
    wanted = _ids(ids)
    actions = set(session.scalars(select(OutboxItem.id).where(OutboxItem.id.in_(wanted), OutboxItem.kind == "action")))
    return sorted(actions), [i for i in wanted if i not in actions]


def replay_actions(session: Session, actor: str, ids: Sequence[int]) -> list[int]:
    """Set rule-action rows back to pending to run again with the SAME idempotency key; returns the ids. Call
    `enqueue_actions` with them after the commit.

    The key goes to the CRM or Slack with the action, so a replay of an action that did land finds it there
    instead of creating a second task, message or enrolment. A row still pending is left to its own retries.
    """
    wanted = _ids(ids)
    rows = list(session.scalars(select(OutboxItem).where(OutboxItem.id.in_(wanted), OutboxItem.kind == "action")
                                .order_by(OutboxItem.id)))
    if not rows:
        raise OperationError("none of those rule-action deliveries exist", 404, "not_found")
    busy = [r.id for r in rows if r.status == "pending"]
    if busy:
        raise OperationError(f"action row(s) {', '.join(map(str, busy[:10]))} are still pending: they retry on their "
                             "own", 409, "conflict")
    now = utcnow()
    before = {r.id: r.status for r in rows}
    for row in rows:
        row.payload = {**(row.payload or {}), "replayed_at": now.isoformat(), "replayed_by": actor}
        row.status, row.error, row.sent_at = "pending", None, None
    record(session, actor=actor, action="delivery.replay_action", target=f"outbox:{len(rows)} rows",
           before={"status": before}, after={"ids": [r.id for r in rows][:100],
                                             "keys": [str((r.payload or {}).get("key")) for r in rows][:100]})
    return [r.id for r in rows]


def enqueue_actions(celery: Celery, ids: Sequence[int]) -> bool:
    """Hand replayed action rows to the workers (False when the broker is unreachable: they stay pending)."""
    try:
        for outbox_id in ids:
            celery.send_task(ACTION_TASK, args=[outbox_id], ignore_result=True)
    except Exception:  # noqa: BLE001 - broker down: the pending rows are durable; replay again when it is back
        return False
    return True
