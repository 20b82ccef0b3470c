"""Persist scores: current values on the lead, every change in score history; newer never loses to older."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, func, or_, select, union, update
from sqlalchemy.orm import Session

from core.records import Movement, Score, utcnow
from storage.models import InboxEvent, Lead, LeadCrmId, ScoreHistory
from storage.pilots import GROUP_COLUMNS, join_groups, score_hidden


@dataclass(frozen=True)
class ScoreChange:
    """What happened to one lead's score."""

    lead_id: int
    previous: int | None
    current: int
    grade_changed: bool
    reasons_changed: bool
    group: str | None = None  # pilot | control while the lead is in a pilot (storage.pilots)
    hidden: bool = False  # a control lead of a pilot not ended: nothing shown in the CRM, no alert
    trend_changed: bool = False  # the score trend reads differently now (worth a write even without a move)

    @property
    def changed(self) -> bool:
        """True when anything a CRM field shows has changed."""
        return self.previous != self.current or self.grade_changed or self.reasons_changed


class MovementRule(Protocol):
    """How a lead's score movement is worked out (scoring.movement.TrendRule): its window and its step."""

    window: timedelta

    def advance(self, before: Movement, old_score: int | None, old_reasons: Sequence[str] | None, new_score: int,
                new_reasons: Sequence[str], window_start: tuple[int, int | None] | None, now: datetime) -> Movement:
        """The movement once `new_score` replaces `old_score` at `now` (`window_start`: see window_starts)."""
        ...


# The leads columns a lead's movement is read from, in movement_of's order (the writeback selects them).
MOVEMENT_COLUMNS = (Lead.previous_score, Lead.score_trend, Lead.score_changed_at, Lead.score_change_reason)
_LEADS = Lead.__table__
_SET_SCORE = (
    update(_LEADS).where(_LEADS.c.id == bindparam("lid"))
    .values(score=bindparam("score"), probability=bindparam("probability"), grade=bindparam("grade"),
            reasons=bindparam("reasons"), model_version=bindparam("model_version"), scored_at=bindparam("scored_at"),
            score_event_at=bindparam("event_at"), previous_score=bindparam("previous"),
            score_trend=bindparam("trend"), score_changed_at=bindparam("changed_at"),
            score_change_reason=bindparam("change_reason"))
)
_SET_EVENT_AT = update(_LEADS).where(_LEADS.c.id == bindparam("lid")).values(score_event_at=bindparam("event_at"))


def movement_of(row: Any) -> Movement:
    """The movement a leads row holds (its previous_score, score_trend, score_changed_at, score_change_reason)."""
    return Movement(row.previous_score, row.score_trend, row.score_changed_at, row.score_change_reason)


def window_starts(session: Session, lead_ids: Sequence[int], since: datetime) -> dict[int, tuple[int, int | None]]:
    """Per lead, (score, score before it) of its first history row after `since`; leads with none are left out.

    One query for a batch (the score held at a trend window's start, see scoring.movement.reference_of).
    """
    if not lead_ids:
        return {}
    first = (select(ScoreHistory.lead_id, func.min(ScoreHistory.id).label("id"))
             .where(ScoreHistory.lead_id.in_(list(lead_ids)), ScoreHistory.created_at > since)
             .group_by(ScoreHistory.lead_id).subquery())
    rows = session.execute(select(ScoreHistory.lead_id, ScoreHistory.score, ScoreHistory.previous_score)
                           .join(first, first.c.id == ScoreHistory.id))
    return {row.lead_id: (row.score, row.previous_score) for row in rows}


def apply_scores(session: Session, scores: Mapping[int, Score], trigger: str = "event",
                 movement: MovementRule | None = None) -> list[ScoreChange]:
    """Store each lead's new score unless the lead already holds a score computed as of a later instant.

    Only changes are written to score history; returns what changed (skipped leads are left out). With a
    `movement` rule each stored lead's movement (previous score, trend, last change, what changed) is
    worked out too, from one history query for the batch; without one it is kept as it was.
    Core statements, not ORM objects: this runs for every lead of every batch, and the unit of work cost
    more than the scoring itself.
    """
    if not scores:
        return []
    current = {row.id: row for row in session.execute(join_groups(
        select(Lead.id, Lead.score, Lead.grade, Lead.reasons, Lead.model_version, Lead.score_event_at,
               *MOVEMENT_COLUMNS, *GROUP_COLUMNS)
        .where(Lead.id.in_(list(scores)))
    ))}
    now = utcnow()
    changes: list[ScoreChange] = []
    history: list[dict[str, Any]] = []
    scored: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []
    for lead_id, score in scores.items():
        lead = current.get(lead_id)
        if lead is None:
            continue  # forgotten (privacy deletion) while it was being scored
        if lead.score_event_at is not None and score.feature_time < lead.score_event_at:
            continue  # an older computation finishing late must not overwrite a newer score
        reasons = list(score.reasons)
        change = ScoreChange(
            lead_id=lead_id,
            previous=lead.score,
            current=score.value,
            grade_changed=lead.grade != score.grade,
            reasons_changed=(lead.reasons or []) != reasons,
            group=lead.group,
            hidden=score_hidden(lead.group, lead.status),
        )
        if not change.changed and lead.model_version == score.model_version:
            seen.append({"lid": lead_id, "event_at": score.feature_time})
            continue
        scored.append({"lid": lead_id, "score": score.value, "probability": float(score.probability),
                       "grade": score.grade, "reasons": reasons, "model_version": score.model_version,
                       "scored_at": now, "event_at": score.feature_time})
        history.append({
            "lead_id": lead_id, "score": score.value, "probability": float(score.probability), "grade": score.grade,
            "reasons": reasons, "model_version": score.model_version, "trigger": trigger,
            "feature_time": score.feature_time, "created_at": now, "previous_score": lead.score,
        })
        changes.append(change)
    turned = _add_movement(session, scored, current, movement, now)
    if turned:
        changes = [replace(c, trend_changed=True) if c.lead_id in turned else c for c in changes]
    # Table-level (Core) statements: one executemany of UPDATE ... WHERE id = ? each.
    if scored:
        session.execute(_SET_SCORE, scored)
    if seen:
        session.execute(_SET_EVENT_AT, seen)
    if history:
        session.execute(ScoreHistory.__table__.insert(), history)
    return changes


def _add_movement(session: Session, scored: list[dict[str, Any]], current: Mapping[int, Any],
                  rule: MovementRule | None, now: datetime) -> set[int]:
    """Fill each stored score's movement columns: worked out by `rule`, or kept as the lead held them.

    Returns the leads whose trend now reads differently.
    """
    turned: set[int] = set()
    # A first score has no history to look up.
    known = [s["lid"] for s in scored if current[s["lid"]].score is not None]
    starts = window_starts(session, known, now - rule.window) if rule and known else {}
    for values in scored:
        lead = current[values["lid"]]
        moved = before = movement_of(lead)  # kept as it was without a rule
        if rule is not None:
            moved = rule.advance(before, lead.score, lead.reasons, values["score"], values["reasons"],
                                 starts.get(values["lid"]), now)
        values.update(previous=moved.previous, trend=moved.trend, changed_at=moved.changed_at,
                      change_reason=moved.reason)
        if moved.trend != before.trend:
            turned.add(values["lid"])
    return turned


def leads_moving_before(session: Session, changed_before: datetime, steady: str,
                        limit: int) -> list[tuple[int, Movement]]:
    """Leads whose trend is not `steady` though their score last changed at or before `changed_before`."""
    rows = session.execute(
        select(Lead.id, *MOVEMENT_COLUMNS)
        .where(Lead.score_changed_at <= changed_before, Lead.score_trend.is_not(None), Lead.score_trend != steady)
        .order_by(Lead.score_changed_at).limit(limit))
    return [(row.id, movement_of(row)) for row in rows]


_SET_TREND = (update(_LEADS).where(_LEADS.c.id == bindparam("lid"), _LEADS.c.score_trend == bindparam("was"),
                                   _LEADS.c.score_changed_at == bindparam("changed_at"))
              .values(score_trend=bindparam("trend")))


def set_trends(session: Session, trends: Mapping[int, tuple[Movement, str]]) -> None:
    """Store each lead's new trend (lead id -> (movement it was read with, trend)), unless it was re-scored since."""
    if trends:
        session.execute(_SET_TREND, [{"lid": lead_id, "was": before.trend, "changed_at": before.changed_at,
                                      "trend": trend} for lead_id, (before, trend) in trends.items()])


def score_history(session: Session, lead_id: int, limit: int = 200) -> Sequence[ScoreHistory]:
    """A lead's score history, newest first."""
    query = select(ScoreHistory).where(ScoreHistory.lead_id == lead_id).order_by(ScoreHistory.id.desc()).limit(limit)
    return session.scalars(query).all()


def leads_scored_before(session: Session, cutoff: datetime, limit: int) -> list[int]:
    """Leads whose score was last computed before `cutoff` (candidates for decay re-scoring)."""
    query = (
        select(Lead.id)
        .where(Lead.score_event_at.is_not(None), Lead.score_event_at < cutoff)
        .order_by(Lead.score_event_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def leads_behind_their_events(session: Session, *, processed_before: datetime, received_since: datetime,
                              limit: int) -> list[int]:
    """Leads with an event processed (before `processed_before`) after their score was computed.

    Their score task was lost (a worker killed after ingest committed, Redis restarted with the task in
    flight): the events are in the features but not in the score. Only events received since
    `received_since` are looked at, so the scan stays small.
    """
    newest = (
        select(InboxEvent.crm, InboxEvent.object_type, InboxEvent.object_id,
               func.max(InboxEvent.processed_at).label("at"))
        .where(InboxEvent.status == "done", InboxEvent.received_at >= received_since,
               InboxEvent.processed_at < processed_before)
        .group_by(InboxEvent.crm, InboxEvent.object_type, InboxEvent.object_id)
        .cte("newest")
    )
    behind = or_(Lead.score_event_at.is_(None), Lead.score_event_at < newest.c.at)
    # A lead's records are its CRM id rows and its web user id: two joins on indexed columns, united (one OR
    # across both made the database compare every lead with every record).
    by_crm_id = (
        select(Lead.id)
        .join(LeadCrmId, LeadCrmId.lead_id == Lead.id)
        .join(newest, and_(newest.c.crm == LeadCrmId.crm, newest.c.object_type == LeadCrmId.object_type,
                           newest.c.object_id == LeadCrmId.object_id))
        .where(behind)
    )
    by_web_id = (
        select(Lead.id)
        .join(newest, and_(newest.c.crm == "web", newest.c.object_type == "person",
                           newest.c.object_id == Lead.external_id))
        .where(behind)
    )
    query = union(by_crm_id, by_web_id).limit(limit)
    return list(session.scalars(query))
