"""One inbox row opened: its payload (secrets scrubbed, personal data masked for viewers), error, attempts and
processing history; retry (back to pending, handed to ingest) and discard (set aside for good), both audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.records import utcnow
from services import Conflict, get_row
from services.dead_letters import masked
from storage.audit import record, scrub
from storage.inbox import mark_enqueued
from storage.leads import lead_id_by_record
from storage.models import AuditEntry, DeadLetter, InboxEvent, Lead, Source

# Rows no worker has turned into lead data: only these can be discarded (a processed row has had its effect).
DISCARDABLE = ("pending", "failed", "dead")
# Audit actions that name inbox rows, and how the history says them.
_AUDITED = {"delivery.replay_inbox": "replayed: set back to pending and queued for ingest",
            "inbox.retry": "retried: set back to pending and queued for ingest",
            "inbox.discard": "discarded: will not be processed"}
_HISTORY_AUDIT_LIMIT = 500  # replays are rare; the newest entries after the row arrived are plenty


@dataclass(frozen=True)
class HistoryEntry:
    """One step in an inbox row's life: when, what happened, and who did it (None: the pipeline)."""

    at: datetime
    what: str
    by: str | None = None


@dataclass(frozen=True)
class InboxEventView:
    """An inbox row as the admin page and the API show it."""

    id: int
    source_id: int | None
    source_name: str | None
    crm: str
    object_type: str
    object_id: str
    event_type: str
    status: str
    attempts: int
    error: str | None
    occurred_at: datetime
    received_at: datetime
    enqueued_at: datetime | None
    processed_at: datetime | None
    lead_id: int | None
    payload: dict[str, Any]
    history: list[HistoryEntry]
    dead_letter_ids: list[int]
    can_discard: bool


def get_inbox_event(session: Session, row_id: int, *, mask_personal: bool) -> InboxEventView:
    """One inbox row with its payload and history; `mask_personal` hides e-mails, names and phones (viewers)."""
    row = get_row(session, InboxEvent, row_id, "inbox event")
    source_name = session.scalar(select(Source.name).where(Source.id == row.source_id)) if row.source_id else None
    payload = scrub({"email": row.email, "properties": row.properties or {}})  # secret-looking keys never shown
    if mask_personal:
        payload = masked(payload)
    letters = list(session.scalars(select(DeadLetter).where(DeadLetter.inbox_id == row.id).order_by(DeadLetter.id)))
    return InboxEventView(
        id=row.id, source_id=row.source_id, source_name=source_name, crm=row.crm, object_type=row.object_type,
        object_id=row.object_id, event_type=row.event_type, status=row.status, attempts=row.attempts,
        error=masked(row.error) if mask_personal and row.error else row.error,
        occurred_at=row.occurred_at, received_at=row.received_at, enqueued_at=row.enqueued_at,
        processed_at=row.processed_at, lead_id=_lead_of(session, row), payload=payload,
        history=_history(session, row, source_name, letters), dead_letter_ids=[letter.id for letter in letters],
        can_discard=row.status in DISCARDABLE,
    )


def _lead_of(session: Session, row: InboxEvent) -> int | None:
    """The lead this row's record (or e-mail) belongs to now, if any."""
    if row.crm == "web":  # a behavioural event names the person by the site's user id
        lead_id = session.scalar(select(Lead.id).where(Lead.external_id == row.object_id))
    else:
        lead_id = lead_id_by_record(session, row.crm, row.object_type, row.object_id)
    if lead_id is None and row.email:
        lead_id = session.scalar(select(Lead.id).where(Lead.email == row.email).order_by(Lead.id).limit(1))
    return lead_id


def _history(session: Session, row: InboxEvent, source_name: str | None,
             letters: list[DeadLetter]) -> list[HistoryEntry]:
    """What the row's columns, its dead letters and the audit log record about it, oldest first."""
    steps = [HistoryEntry(row.received_at, f"received from {source_name}" if source_name else "received")]
    for letter in letters:
        steps.append(HistoryEntry(letter.created_at,
                                  f"set aside as dead letter {letter.id} after {letter.attempts} failed attempt(s)"))
        if letter.status in ("retried", "discarded"):
            steps.append(HistoryEntry(letter.updated_at, f"dead letter {letter.id} {letter.status}",
                                      letter.resolved_by))
    entries = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action.in_(list(_AUDITED)), AuditEntry.created_at >= row.received_at,
               or_(AuditEntry.target == f"inbox:{row.id}", AuditEntry.action == "delivery.replay_inbox"))
        .order_by(AuditEntry.id.desc()).limit(_HISTORY_AUDIT_LIMIT))
    for entry in entries:
        # A replay names its rows in `after.ids` (a batch); retry and discard name the one row in the target.
        ids = (entry.after or {}).get("ids") or []
        if entry.target == f"inbox:{row.id}" or row.id in ids:
            steps.append(HistoryEntry(entry.created_at, _AUDITED[entry.action], entry.actor))
    if row.processed_at is not None:
        outcome = {"done": "processed", "ignored": f"processed and ignored ({row.error or 'nothing to do'})"}
        steps.append(HistoryEntry(row.processed_at, outcome.get(row.status, "last processed")))
    if row.status == "pending" and row.enqueued_at is not None:
        if row.error:
            steps.append(HistoryEntry(row.enqueued_at, f"attempt {row.attempts + 1} due (attempt {row.attempts} "
                                                       "failed)"))
        elif row.enqueued_at != row.received_at:
            steps.append(HistoryEntry(row.enqueued_at, "handed to the ingest queue again"))
    return sorted(steps, key=lambda step: step.at)


def retry_inbox_event(session: Session, actor: str, row_id: int) -> int:
    """Set a row back to pending with a fresh count of attempts; call `enqueue_ingest` after the commit.

    Any row may be retried: ingest resolves leads idempotently, so a processed row only does its work again.
    An open dead letter of the row is closed as "retried".
    """
    row = get_row(session, InboxEvent, row_id, "inbox event")
    before = {"status": row.status, "attempts": row.attempts}  # not the error: it may quote payload values
    now = utcnow()
    session.execute(update(InboxEvent).where(InboxEvent.id == row.id)
                    .values(status="pending", attempts=0, error=None))
    mark_enqueued(session, [row.id], now)
    _close_letters(session, row.id, "retried", actor, now)
    record(session, actor=actor, action="inbox.retry", target=f"inbox:{row.id}", before=before,
           after={"status": "pending", "attempts": 0})
    return row.id


def discard_inbox_event(session: Session, actor: str, row_id: int) -> int:
    """Set an unprocessed row aside for good (status "discarded"); an open dead letter of it is closed too."""
    row = get_row(session, InboxEvent, row_id, "inbox event")
    status = row.status
    if status not in DISCARDABLE:
        raise Conflict(f"inbox event {row.id} is {status}: only {', '.join(DISCARDABLE)} rows can be discarded",
                       "not_discardable")
    now = utcnow()
    # Conditional on the status read above: a worker that processed the row meanwhile wins, and we say so.
    changed = session.execute(update(InboxEvent).where(InboxEvent.id == row.id, InboxEvent.status == status)
                              .values(status="discarded").execution_options(synchronize_session=False)).rowcount
    if not changed:
        raise Conflict(f"inbox event {row.id} changed meanwhile; reload and try again", "not_discardable")
    _close_letters(session, row.id, "discarded", actor, now)
    record(session, actor=actor, action="inbox.discard", target=f"inbox:{row.id}",
           before={"status": status, "attempts": row.attempts}, after={"status": "discarded"})
    return row.id


def _close_letters(session: Session, row_id: int, status: str, actor: str, now: datetime) -> None:
    session.execute(update(DeadLetter).where(DeadLetter.inbox_id == row_id, DeadLetter.status == "open")
                    .values(status=status, resolved_by=actor, updated_at=now))
