"""Persistence of continual learning: live prequential scores, online learner snapshots, model events.

Plain reads and writes; what they mean (test-then-train, the promotion gate, ADWIN) lives in
tasks/online_learning.py and scoring/.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from core.records import utcnow
from storage.models import ModelEvent, OnlineSnapshot, PrequentialScore

MODELS = ("champion", "online", "blend")
SNAPSHOTS_KEPT = 5


@dataclass(frozen=True)
class Scored:
    """One stored prequential score."""

    lead_id: int
    model: str
    model_version: str
    probability: float
    won: bool
    decision_time: datetime
    labelled_at: datetime


def learned_leads(session: Session) -> set[int]:
    """Leads whose label the online learner has learned (they have an `online` row)."""
    return set(session.scalars(select(PrequentialScore.lead_id).where(PrequentialScore.model == "online")))


def add_scores(session: Session, rows: Sequence[Scored]) -> None:
    """Store prequential scores (one executemany)."""
    if rows:
        now = utcnow()
        session.execute(insert(PrequentialScore), [
            {"lead_id": r.lead_id, "model": r.model, "model_version": r.model_version[:64],
             "probability": r.probability, "won": r.won, "decision_time": r.decision_time,
             "labelled_at": r.labelled_at, "created_at": now} for r in rows])


def scores_of(session: Session, model: str, *, since: datetime | None = None, limit: int | None = None,
              leads: Iterable[int] | None = None, recorded_since: datetime | None = None) -> list[Scored]:
    """One model's stored scores in label order (the newest `limit` of them, when given; `recorded_since`: only
    those stored from then on)."""
    query = select(PrequentialScore).where(PrequentialScore.model == model)
    if since is not None:
        query = query.where(PrequentialScore.labelled_at >= since)
    if recorded_since is not None:
        query = query.where(PrequentialScore.created_at >= recorded_since)
    if leads is not None:
        query = query.where(PrequentialScore.lead_id.in_(sorted(set(leads))))
    query = query.order_by(PrequentialScore.labelled_at.desc(), PrequentialScore.id.desc())
    if limit is not None:
        query = query.limit(limit)
    rows = [Scored(r.lead_id, r.model, r.model_version, r.probability, r.won, r.decision_time, r.labelled_at)
            for r in session.scalars(query)]
    rows.reverse()
    return rows


def save_snapshot(session: Session, *, version: str, kind: str, schema_version: str | None, definition: str | None,
                  learned: int, positives: int, state: bytes, keep: int = SNAPSHOTS_KEPT) -> OnlineSnapshot:
    """Store a learner snapshot and drop all but the newest `keep`."""
    row = OnlineSnapshot(version=version, kind=kind, schema_version=schema_version, definition=definition,
                         learned=learned, positives=positives, state=state, created_at=utcnow())
    session.add(row)
    session.flush()
    old = list(session.scalars(select(OnlineSnapshot.id).order_by(OnlineSnapshot.id.desc()).offset(keep)))
    if old:
        session.execute(delete(OnlineSnapshot).where(OnlineSnapshot.id.in_(old)))
    return row


def latest_snapshot(session: Session) -> OnlineSnapshot | None:
    """The newest learner snapshot, or None."""
    return session.scalars(select(OnlineSnapshot).order_by(OnlineSnapshot.id.desc()).limit(1)).first()


def snapshot_named(session: Session, version: str) -> OnlineSnapshot | None:
    """The snapshot of one version, or None (it may have been dropped)."""
    return session.scalars(select(OnlineSnapshot).where(OnlineSnapshot.version == version)).first()


def record_event(session: Session, kind: str, detail: Mapping[str, Any], *, model_version: str | None = None,
                 at: datetime | None = None) -> ModelEvent:
    """Append a model event (drift check, ADWIN change, retraining, online serving, rebuild)."""
    row = ModelEvent(kind=kind, detail=dict(detail), model_version=model_version, at=at or utcnow())
    session.add(row)
    session.flush()
    return row


def events_of(session: Session, *, kinds: Iterable[str] | None = None, since: datetime | None = None,
              limit: int = 1000) -> list[ModelEvent]:
    """Model events, oldest first (the newest `limit`)."""
    query = select(ModelEvent)
    if kinds is not None:
        query = query.where(ModelEvent.kind.in_(list(kinds)))
    if since is not None:
        query = query.where(ModelEvent.at >= since)
    rows = list(session.scalars(query.order_by(ModelEvent.at.desc(), ModelEvent.id.desc()).limit(limit)))
    rows.reverse()
    return rows


def last_event(session: Session, kinds: Iterable[str]) -> ModelEvent | None:
    """The newest event of these kinds, or None."""
    return session.scalars(select(ModelEvent).where(ModelEvent.kind.in_(list(kinds)))
                           .order_by(ModelEvent.at.desc(), ModelEvent.id.desc()).limit(1)).first()


def first_moment(session: Session) -> datetime | None:
    """The earliest label time of a stored prequential score or model event (where a history starts), or None."""
    moments = [session.scalar(select(func.min(PrequentialScore.labelled_at))),
               session.scalar(select(func.min(ModelEvent.at)))]
    found = [m for m in moments if m is not None]
    return min(found) if found else None
