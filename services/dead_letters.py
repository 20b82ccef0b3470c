"""Dead letters: list and open them (payload, error, attempts), retry or discard them (audited).

Retry hands the work back to its stage: an inbox row goes back to pending and to the ingest queue, a lead
leaves the score stage's set-aside list and is scored again, a refused CRM write is marked for writing with
the lead's current values. Discard closes the dead letter without doing the work: a lead's later events
are scored as usual, and a refused write's very values stay aside while new values are written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from redis import Redis
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services import NotFound, OperationError, get_row
from services.deliveries import Page, paginate
from core.keys import DIRTY_KEY, SCORE_ASIDE_KEY, WRITEBACK_ASIDE_KEY, WRITTEN_KEY
from core.records import utcnow
from storage.audit import record, scrub
from storage.dead_letters import STAGES, STATUSES
from storage.inbox import mark_enqueued
from storage.models import DeadLetter, InboxEvent
from tasks.names import INGEST_TASK, SCORE_TASK, WRITEBACK_TASK

MAX_AT_ONCE = 1000
_EMAIL = re.compile(r"[^\s@\"'<>]{1,64}@[^\s@\"'<>]{1,255}")
# Fields that name or reach a person, as HubSpot, Salesforce and Segment spell them (compared lower-cased).
_PERSONAL_KEYS = frozenset({"name", "firstname", "first_name", "lastname", "last_name", "fullname", "full_name",
                            "ip", "birthday", "salutation"})
_PERSONAL_WORDS = ("phone", "address", "street", "postal", "zip")


@dataclass(frozen=True)
class DeadLetterView:
    """A dead letter with what it holds: the inbox row's event for ingest, the stage's payload otherwise."""

    id: int
    stage: str
    status: str
    crm: str | None
    inbox_id: int | None
    lead_id: int | None
    error: str
    attempts: int
    created_at: Any
    updated_at: Any
    resolved_by: str | None
    payload: dict[str, Any]


def list_dead_letters(session: Session, *, stage: str | None = None, status: str | None = "open",
                      limit: int = 50, offset: int = 0) -> Page:
    """Dead letters newest first (default: the open ones)."""
    if stage and stage not in STAGES:
        raise OperationError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    if status and status not in STATUSES:
        raise OperationError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    query = select(DeadLetter)
    if stage:
        query = query.where(DeadLetter.stage == stage)
    if status:
        query = query.where(DeadLetter.status == status)
    return paginate(session, query, [DeadLetter.id.desc()], limit, offset)


def counts(session: Session) -> dict[str, dict[str, int]]:
    """status -> stage -> count."""
    out: dict[str, dict[str, int]] = {}
    for status, stage, count in session.execute(
            select(DeadLetter.status, DeadLetter.stage, func.count()).group_by(DeadLetter.status, DeadLetter.stage)):
        out.setdefault(status, {})[stage] = int(count)
    return out


def get_dead_letter(session: Session, letter_id: int, *, mask_personal: bool) -> DeadLetterView:
    """One dead letter with its payload; `mask_personal` hides e-mails, names, phones and addresses (for viewers)."""
    letter = get_row(session, DeadLetter, letter_id, "dead letter")
    payload: dict[str, Any] = dict(letter.payload or {})
    if letter.inbox_id is not None:
        row = session.get(InboxEvent, letter.inbox_id)
        if row is not None:
            payload = {"event": {"crm": row.crm, "object_type": row.object_type, "object_id": row.object_id,
                                 "event_type": row.event_type, "email": row.email,
                                 "occurred_at": row.occurred_at.isoformat(), "received_at": row.received_at.isoformat(),
                                 "properties": row.properties or {}}, "inbox_status": row.status}
    shown = scrub(payload)  # secret-looking keys are never shown
    if mask_personal:
        shown = masked(shown)
    return DeadLetterView(letter.id, letter.stage, letter.status, letter.crm, letter.inbox_id, letter.lead_id,
                          letter.error, letter.attempts, letter.created_at, letter.updated_at, letter.resolved_by, shown)


def masked(value: Any) -> Any:
    """A copy of `value` with e-mail addresses, and the values of name, phone and address fields, masked."""
    if isinstance(value, dict):
        return {k: "***" if _is_personal(str(k)) and v not in (None, "") else masked(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return _EMAIL.sub("***@***", value)
    return value


def _is_personal(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return lowered in _PERSONAL_KEYS or any(word in lowered for word in _PERSONAL_WORDS)


def _open_letters(session: Session, ids: Sequence[int]) -> list[DeadLetter]:
    wanted = sorted({int(i) for i in ids if 1 <= int(i) <= 2**62})
    if not wanted:
        raise OperationError("choose at least one dead letter")
    if len(wanted) > MAX_AT_ONCE:
        raise OperationError(f"at most {MAX_AT_ONCE} dead letters at a time")
    letters = list(session.scalars(select(DeadLetter).where(DeadLetter.id.in_(wanted)).order_by(DeadLetter.id)))
    if not letters:
        raise NotFound("none of those dead letters exist")
    closed = [str(letter.id) for letter in letters if letter.status != "open"]
    if closed:
        raise OperationError(f"dead letter(s) {', '.join(closed[:10])} are not open (retried or discarded already)",
                             409, "not_open")
    return letters


@dataclass(frozen=True)
class RetryPlan:
    """What a retry hands back to the stages once the transaction has committed."""

    inbox_ids: list[int]
    score_leads: list[int]
    write_crms: list[str]

    @property
    def count(self) -> int:
        """How many pieces of work go back."""
        return len(self.inbox_ids) + len(self.score_leads) + len(self.write_crms)


def retry_dead_letters(session: Session, redis: Redis, actor: str, ids: Sequence[int]) -> RetryPlan:
    """Hand dead letters back to their stages (status "retried"); call `enqueue_retry` after the commit."""
    letters = _open_letters(session, ids)
    now = utcnow()
    inbox_ids = [letter.inbox_id for letter in letters if letter.stage == "ingest" and letter.inbox_id]
    score_leads = [letter.lead_id for letter in letters if letter.stage == "score" and letter.lead_id]
    writes: dict[str, list[int]] = {}
    for letter in letters:
        if letter.stage == "writeback" and letter.lead_id and letter.crm:
            writes.setdefault(letter.crm, []).append(letter.lead_id)
        letter.status, letter.resolved_by, letter.updated_at = "retried", actor, now
    if inbox_ids:
        # A fresh start: the row gets max_attempts tries again.
        session.execute(update(InboxEvent).where(InboxEvent.id.in_(inbox_ids), InboxEvent.status == "dead")
                        .values(status="pending", attempts=0, error=None))
        mark_enqueued(session, inbox_ids, now)
    pipe = redis.pipeline(transaction=False)
    if score_leads:
        pipe.srem(SCORE_ASIDE_KEY, *score_leads)
    for crm, lead_ids in writes.items():
        pipe.hdel(WRITEBACK_ASIDE_KEY.format(crm=crm), *lead_ids)
        pipe.hdel(WRITTEN_KEY.format(crm=crm), *lead_ids)  # or an unchanged value would be skipped
        pipe.sadd(DIRTY_KEY.format(crm=crm), *lead_ids)
    pipe.execute()
    record(session, actor=actor, action="dead_letter.retry", target=f"dead_letters:{len(letters)}",
           before={"status": "open"},
           after={"status": "retried", "ids": [letter.id for letter in letters][:100],
                  "stages": sorted({letter.stage for letter in letters})})
    return RetryPlan(inbox_ids, score_leads, sorted(writes))


def enqueue_retry(celery: Celery, plan: RetryPlan) -> bool:
    """Send the retried work to the queues (False when the broker is unreachable; the sweepers catch up)."""
    try:
        for start in range(0, len(plan.inbox_ids), 100):
            celery.send_task(INGEST_TASK, kwargs={"ids": plan.inbox_ids[start:start + 100], "retry": True},
                             ignore_result=True)
        if plan.score_leads:
            celery.send_task(SCORE_TASK, args=[plan.score_leads], kwargs={"trigger": "retry", "retry": True},
                             ignore_result=True)
        for crm in plan.write_crms:
            celery.send_task(WRITEBACK_TASK, args=[crm], ignore_result=True)
    except Exception:  # noqa: BLE001 - broker down: pending rows and dirty marks are durable; sweepers re-send
        return False
    return True


def discard_dead_letters(session: Session, redis: Redis, actor: str, ids: Sequence[int]) -> list[int]:
    """Close dead letters without doing the work (status "discarded"); a lead's later work is tried as usual."""
    letters = _open_letters(session, ids)
    now = utcnow()
    for letter in letters:
        letter.status, letter.resolved_by, letter.updated_at = "discarded", actor, now
    # A discarded score letter lets the lead's next events be scored again; a discarded write keeps those very
    # values aside (sending them again would be refused again), while new values are written as usual.
    score_leads = [letter.lead_id for letter in letters if letter.stage == "score" and letter.lead_id]
    if score_leads:
        redis.srem(SCORE_ASIDE_KEY, *score_leads)
    record(session, actor=actor, action="dead_letter.discard", target=f"dead_letters:{len(letters)}",
           before={"status": "open"},
           after={"status": "discarded", "ids": [letter.id for letter in letters][:100],
                  "stages": sorted({letter.stage for letter in letters})})
    return [letter.id for letter in letters]
