"""Score movement in storage: migration 0011 keeps existing leads and history; apply_scores works each stored lead's
movement out from one history query, against the score held at the trend window's start; the settle sweep's reads
and conditional writes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import delete, inspect, select, text

from core.records import Movement, Score, utcnow
from scoring.movement import DECLINING, IMPROVING, STEADY, TrendRule
from storage.db import Database, make_engine
from storage.migrate import alembic_config, current_revision, upgrade
from storage.models import Lead, ScoreHistory
from storage.scores import apply_scores, leads_moving_before, set_trends

AT = "2026-12-01 10:00:00.000000"
RULE = TrendRule(window=timedelta(hours=24), steady=5)


@pytest.mark.parametrize("old_database", ["0009"], indirect=True)
def test_movement_columns_arrive_beside_existing_leads_and_history(old_database: str) -> None:
    engine = make_engine(old_database)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO leads (id, email, properties, score, grade, created_at, updated_at) "
                              "VALUES (1, 'm@acme.io', '{}', 61, 'B', :at, :at)"), {"at": AT})
            conn.execute(text("INSERT INTO score_history (lead_id, score, probability, grade, reasons, model_version, "
                              "\"trigger\", feature_time, created_at) VALUES (1, 61, 0.61, 'B', '[]', 'm1', 'event', "
                              ":at, :at)"), {"at": AT})
        upgrade(old_database, "0011")
        assert current_revision(engine) == "0011"
        columns = {c["name"] for c in inspect(engine).get_columns("leads")}
        assert {"previous_score", "score_trend", "score_changed_at", "score_change_reason"} <= columns
        with engine.connect() as conn:
            assert list(conn.execute(text("SELECT id, score, grade, previous_score, score_trend FROM leads"))) == [
                (1, 61, "B", None, None)]
            assert list(conn.execute(text("SELECT lead_id, score, previous_score FROM score_history"))) == [
                (1, 61, None)]
        command.downgrade(alembic_config(old_database), "0009")
        assert "previous_score" not in {c["name"] for c in inspect(engine).get_columns("score_history")}
        with engine.connect() as conn:
            assert list(conn.execute(text("SELECT id, score FROM leads"))) == [(1, 61)]
        upgrade(old_database, "0011")
        assert current_revision(engine) == "0011"
    finally:
        engine.dispose()


def _score(value: int, *reasons: str) -> Score:
    return Score(value=value, probability=value / 100, grade="B", reasons=reasons, model_version="m1",
                 feature_time=utcnow())


def _store(db: Database, lead_id: int, score: Score) -> None:
    with db.session(write=True) as session:
        apply_scores(session, {lead_id: score}, "event", RULE)


def _age(db: Database, lead_id: int, hours: float) -> None:
    """Move the lead's whole history (and its last change) `hours` into the past."""
    with db.session(write=True) as session:
        for row in session.scalars(select(ScoreHistory).where(ScoreHistory.lead_id == lead_id)):
            row.created_at -= timedelta(hours=hours)
        lead = session.get(Lead, lead_id)
        if lead.score_changed_at is not None:
            lead.score_changed_at -= timedelta(hours=hours)


def _movement(db: Database, lead_id: int) -> tuple[int | None, Movement]:
    with db.session() as session:
        lead = session.get(Lead, lead_id)
        return lead.score, Movement(lead.previous_score, lead.score_trend, lead.score_changed_at,
                                    lead.score_change_reason)


@pytest.fixture()
def lead_id(db: Database) -> int:
    with db.session(write=True) as session:
        session.execute(delete(Lead).where(Lead.email == "mv@acme.io"))
        lead = Lead(email="mv@acme.io", properties={})
        session.add(lead)
        session.flush()
        return lead.id


def test_movement_is_worked_out_against_the_score_held_at_the_window_start(db: Database, lead_id: int) -> None:
    _store(db, lead_id, _score(40, "+ viewed pricing"))
    assert _movement(db, lead_id) == (40, Movement())  # a first score: nothing to compare with
    _age(db, lead_id, 30)  # the first score is now older than the window

    _store(db, lead_id, _score(60, "+ viewed pricing", "+ requested a demo"))
    score, moved = _movement(db, lead_id)
    assert (score, moved.previous, moved.trend, moved.reason) == (60, 40, IMPROVING, "+20: requested a demo")
    assert moved.changed_at is not None and utcnow() - moved.changed_at < timedelta(minutes=1)
    changed_at = moved.changed_at

    # 60 -> 58: the score held at the window's start was 40 (the 60 came inside the window): still improving.
    _store(db, lead_id, _score(58, "+ viewed pricing", "+ requested a demo"))
    assert _movement(db, lead_id)[1].trend == IMPROVING
    # The same value with new reasons keeps the last change and its sentence.
    _store(db, lead_id, _score(58, "+ requested a demo"))
    score, moved = _movement(db, lead_id)
    assert (score, moved.previous, moved.reason) == (58, 60, "-2: the same reasons weigh less")
    assert moved.changed_at > changed_at

    # A day on, 58 -> 45: against 58 (held all window long) that is declining; then 45 -> 47 within the band.
    _age(db, lead_id, 30)
    _store(db, lead_id, _score(45))
    assert _movement(db, lead_id)[1].trend == DECLINING
    _store(db, lead_id, _score(47))
    assert _movement(db, lead_id)[1].trend == DECLINING  # the window still starts at 58: -11
    with db.session() as session:
        history = list(session.execute(select(ScoreHistory.score, ScoreHistory.previous_score)
                                       .where(ScoreHistory.lead_id == lead_id).order_by(ScoreHistory.id)))
    assert history == [(40, None), (60, 40), (58, 60), (58, 58), (45, 58), (47, 45)]


def test_the_sweep_reads_moving_leads_and_skips_one_rescored_meanwhile(db: Database, lead_id: int) -> None:
    _store(db, lead_id, _score(40))
    _store(db, lead_id, _score(60))
    with db.session(write=True) as session:
        [(found, before)] = [(i, m) for i, m in leads_moving_before(session, utcnow(), STEADY, 100) if i == lead_id]
    assert before.trend == IMPROVING
    _store(db, lead_id, _score(75))  # re-scored after the sweep read it: its new trend stands
    with db.session(write=True) as session:
        set_trends(session, {found: (before, STEADY)})
    assert _movement(db, lead_id)[1].trend == IMPROVING
    with db.session(write=True) as session:
        [(found, before)] = [(i, m) for i, m in leads_moving_before(session, utcnow(), STEADY, 100) if i == lead_id]
        set_trends(session, {found: (before, STEADY)})
    assert _movement(db, lead_id)[1].trend == STEADY
    with db.session() as session:
        assert lead_id not in [i for i, _ in leads_moving_before(session, utcnow(), STEADY, 100)]
