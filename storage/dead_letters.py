"""Dead letters: work a pipeline stage set aside after it kept failing, kept with its error for an admin.

An inbox row that fails `max_attempts` times becomes status "dead" with a dead letter (stage "ingest");
a lead whose values break scoring or a CRM write gets one (stage "score" or "writeback"). Failures are
counted in their own transaction, after the failing one rolled back, so the count survives the rollback.
While a lead is still being retried its row has status "retrying"; "open" means set aside; an admin
then retries ("retried") or discards ("discarded") it.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from core.records import utcnow
from storage.models import DeadLetter, InboxEvent

STAGES = ("ingest", "score", "writeback")
STATUSES = ("retrying", "open", "retried", "discarded")
MAX_ERROR = 2000


def describe_error(exc: BaseException) -> str:
    """The exception's type, message (cut short) and the line that raised it, for a dead letter."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(exc).replace("\x00", "")[:500]
    text = f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}"
    return text.encode("utf-8", "replace").decode("utf-8")[:MAX_ERROR]


def error_kind(exc: BaseException) -> str:
    """Type and raising line only: what a log may carry (messages can quote payload values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{type(exc).__name__} at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else type(exc).__name__


@dataclass(frozen=True)
class InboxFailure:
    """What counting one failed attempt of an inbox row did."""

    row_id: int
    attempts: int
    dead: bool


def count_inbox_failure(session: Session, row_id: int, error: str, *, max_attempts: int,
                        retry_at: datetime | None = None) -> InboxFailure | None:
    """Count a failed attempt on a pending row; at `max_attempts` it turns "dead" with a dead letter.

    `retry_at` becomes the row's enqueued_at, so the sweeper leaves it to the retry already scheduled.
    Returns None when the row is no longer pending (another worker finished it meanwhile).
    """
    now = utcnow()
    table = InboxEvent.__table__
    attempts = table.c.attempts + 1
    row = session.execute(
        update(table).where(table.c.id == row_id, table.c.status == "pending")
        .values(attempts=attempts, error=error[:MAX_ERROR], enqueued_at=retry_at or now,
                status=case((attempts >= max_attempts, "dead"), else_=table.c.status))
        .returning(table.c.attempts, table.c.status)
    ).first()
    if row is None:
        return None
    dead = row.status == "dead"
    if dead:
        session.add(DeadLetter(stage="ingest", inbox_id=row_id, error=error[:MAX_ERROR], attempts=row.attempts,
                               payload={}, status="open", created_at=now, updated_at=now))
    return InboxFailure(row_id, int(row.attempts), dead)


def count_lead_failure(session: Session, stage: str, lead_id: int, error: str, *, max_attempts: int,
                       crm: str | None = None, payload: Mapping[str, Any] | None = None,
                       at_once: bool = False) -> DeadLetter:
    """Count a failure of `stage` for one lead: "retrying" until `max_attempts` (or `at_once`), then "open".

    One row per (stage, crm, lead) while it is retrying or open: a later failure updates it.
    """
    now = utcnow()
    letter = session.scalars(
        select(DeadLetter).where(DeadLetter.stage == stage, DeadLetter.lead_id == lead_id,
                                 DeadLetter.crm.is_(None) if crm is None else DeadLetter.crm == crm,
                                 DeadLetter.status.in_(("retrying", "open")))
        .order_by(DeadLetter.id.desc()).with_for_update()
    ).first()
    if letter is None:
        letter = DeadLetter(stage=stage, crm=crm, lead_id=lead_id, attempts=0, payload={}, status="retrying",
                            created_at=now)
        session.add(letter)
    letter.attempts = (letter.attempts or 0) + 1
    letter.error = error[:MAX_ERROR]
    letter.payload = dict(payload or {})
    letter.updated_at = now
    if at_once or letter.attempts >= max_attempts:
        letter.status = "open"
    session.flush()
    return letter


def clear_lead_failures(session: Session, stage: str, lead_ids: Sequence[int], crm: str | None = None) -> int:
    """Drop the retry counts of leads that went through `stage` fine after failing before."""
    if not lead_ids:
        return 0
    query = delete(DeadLetter).where(DeadLetter.stage == stage, DeadLetter.status == "retrying",
                                     DeadLetter.lead_id.in_(list(lead_ids)))
    if crm is not None:
        query = query.where(DeadLetter.crm == crm)
    return int(session.execute(query).rowcount or 0)


def open_counts(session: Session) -> dict[str, int]:
    """Open dead letters per stage (every stage present, 0 when none)."""
    counts = dict.fromkeys(STAGES, 0)
    for stage, count in session.execute(select(DeadLetter.stage, func.count())
                                        .where(DeadLetter.status == "open").group_by(DeadLetter.stage)):
        counts[stage] = int(count)
    return counts


def opened_since(session: Session, since: datetime) -> int:
    """Dead letters that became open since `since` (still open)."""
    return int(session.scalar(select(func.count()).select_from(DeadLetter)
                              .where(DeadLetter.status == "open", DeadLetter.updated_at >= since)) or 0)


def recent_window(now: datetime | None = None, minutes: int = 60) -> datetime:
    """The start of the "recent" window the health report counts new dead letters in."""
    return (now or utcnow()) - timedelta(minutes=minutes)
