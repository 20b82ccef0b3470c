"""Is the pipeline moving? Stall detection for ingest, scoring and writeback, and dead letters.

Read by `/readyz` (in its body: a stalled worker must not take the web tier out of a load balancer),
`/metrics`, the admin overview, `leadbridge doctor` and `leadbridge run`'s summary line. Every figure is
cheap: the oldest pending inbox row is one step along the (status, received_at) index, progress comes
from Redis counters per 10 seconds (core.progress), dead letters from a small indexed table.

A part is "stalled" when it has work older than `stall_after_seconds` and made no progress in that time;
"behind" when its oldest work is that old but it is moving; "ok" otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.keys import DIRTY_KEY, PAUSED_KEY
from core.progress import progress_since
from core.records import utcnow
from storage.dead_letters import open_counts, opened_since
from storage.inbox import backlog
from storage.models import InboxEvent

OK, BEHIND, STALLED, WARN = "ok", "behind", "stalled", "warn"
PROGRESS_WINDOW = 60.0  # seconds of progress reported beside a stall
CRMS = ("hubspot", "salesforce")
SCORE_QUEUE = "score"


@dataclass(frozen=True)
class PartHealth:
    """One part's state ("ok", "behind", "stalled", "warn") and a sentence an operator can act on."""

    state: str
    detail: str

    def line(self) -> str:
        """"ok", or the state and its detail."""
        return OK if self.state == OK else f"{self.state}: {self.detail}"


@dataclass
class PipelineHealth:
    """Each part's health plus the figures behind it (for /metrics and the overview)."""

    parts: dict[str, PartHealth] = field(default_factory=dict)
    oldest_pending_seconds: float | None = None
    processed: dict[str, int] = field(default_factory=dict)  # per stage, in the last PROGRESS_WINDOW seconds
    waiting: dict[str, int] = field(default_factory=dict)  # inbox rows, dirty leads per CRM, queued score tasks
    dead_letters: dict[str, int] = field(default_factory=dict)  # open, per stage
    dead_letters_recent: int = 0  # opened in the last hour

    @property
    def stalled(self) -> list[str]:
        """Names of stalled parts."""
        return sorted(name for name, part in self.parts.items() if part.state == STALLED)

    def summary(self) -> dict[str, str]:
        """part -> "ok" or "<state>: <detail>"."""
        return {name: part.line() for name, part in self.parts.items()}


def pipeline_health(session: Session, redis: Any, *, stall_after: float, crms: tuple[str, ...] = CRMS,
                    score_queue_length: int | None = None, now: datetime | None = None) -> PipelineHealth:
    """Check every part; `crms` are the configured CRMs, `score_queue_length` the broker's (when known)."""
    moment = now or utcnow()
    health = PipelineHealth()
    window = max(stall_after, PROGRESS_WINDOW)
    # Rows waiting for their own retry (they failed before) are counted as dead letters when they give up,
    # not as a stall of everything else.
    oldest = session.scalar(select(func.min(InboxEvent.received_at))
                            .where(InboxEvent.status == "pending", InboxEvent.error.is_(None)))
    pending = backlog(session)  # capped: this is polled, and a backlog can be a million rows
    health.waiting["inbox"] = pending
    for stage in ("ingest", "score", "writeback"):
        health.processed[stage] = progress_since(redis, stage, PROGRESS_WINDOW)
    recent_ingest = progress_since(redis, "ingest", window)
    if oldest is not None:
        age = (moment - oldest).total_seconds()
        health.oldest_pending_seconds = max(age, 0.0)
        health.parts["ingest"] = _judge(age, stall_after, recent_ingest, "oldest pending row",
                                        health.processed["ingest"], "processed")
    else:
        health.oldest_pending_seconds = 0.0
        health.parts["ingest"] = PartHealth(OK, f"nothing pending; {health.processed['ingest']} processed in 60 s")

    queued = score_queue_length or 0
    health.waiting["score_queue"] = queued
    if queued and progress_since(redis, "score", window) == 0:
        health.parts["score"] = PartHealth(STALLED, f"{queued} score task(s) queued, 0 leads scored in "
                                                    f"{window:.0f} s")
    else:
        health.parts["score"] = PartHealth(OK, f"{health.processed['score']} leads scored in 60 s")

    handled = progress_since(redis, "writeback", window)
    for crm in crms:
        dirty = int(redis.scard(DIRTY_KEY.format(crm=crm)) or 0)
        health.waiting[f"writeback_{crm}"] = dirty
        paused = redis.get(PAUSED_KEY.format(crm=crm))
        if paused is not None:
            reason = paused.decode(errors="replace") if isinstance(paused, bytes) else str(paused)
            health.parts[f"writeback {crm}"] = PartHealth(
                STALLED, f"paused: {crm} refused our credentials ({reason[:120]}); {dirty} leads waiting")
        elif dirty and handled == 0:
            health.parts[f"writeback {crm}"] = PartHealth(
                STALLED, f"{dirty} leads waiting, 0 handled in {window:.0f} s")
        else:
            health.parts[f"writeback {crm}"] = PartHealth(OK, f"{dirty} leads waiting")

    health.dead_letters = open_counts(session)
    health.dead_letters_recent = opened_since(session, moment - timedelta(hours=1))
    total = sum(health.dead_letters.values())
    if health.dead_letters_recent:
        by_stage = ", ".join(f"{n} {stage}" for stage, n in health.dead_letters.items() if n)
        health.parts["dead letters"] = PartHealth(
            WARN, f"{health.dead_letters_recent} new in the last hour, {total} open ({by_stage}): see Dead letters")
    else:
        health.parts["dead letters"] = PartHealth(OK, f"{total} open, none new in the last hour")
    return health


def _judge(age: float, stall_after: float, recent: int, what: str, last_minute: int, verb: str) -> PartHealth:
    detail = f"{what} {age:.0f} s old, {last_minute} {verb} in 60 s"
    if age <= stall_after:
        return PartHealth(OK, detail)
    return PartHealth(STALLED if recent == 0 else BEHIND, detail)
