"""Migration 0009: pilots, lead_groups and pilot_facts arrive beside existing leads, which keep everything; a
group and its facts go with their lead; the downgrade removes the tables and leaves the leads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from storage.db import Database, make_engine
from storage.migrate import alembic_config, current_revision, upgrade
from storage.models import Lead, LeadGroup, Pilot, PilotFacts
from storage.pilots import CONTROL, PILOT, groups_of, insert_groups

HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()

AT = "2026-12-01 10:00:00.000000"


@pytest.mark.parametrize("old_database", ["0008"], indirect=True)
def test_pilots_upgrade_over_existing_leads_and_back(old_database: str) -> None:
    engine = make_engine(old_database)
    try:
        with engine.begin() as conn:
            for lead_id in (1, 2, 3):
                conn.execute(text("INSERT INTO leads (id, email, properties, score, grade, created_at, updated_at) "
                                  "VALUES (:id, :email, '{}', :score, 'B', :at, :at)"),
                             {"id": lead_id, "email": f"p{lead_id}@acme.io", "score": 60 + lead_id, "at": AT})
        upgrade(old_database)  # to the head: the models below are the head's
        assert current_revision(engine) == HEAD
        assert {"pilots", "lead_groups", "pilot_facts"} <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert sorted(conn.execute(text("SELECT id, score, grade FROM leads"))) == [
                (1, 61, "B"), (2, 62, "B"), (3, 63, "B")]
            assert conn.execute(text("SELECT count(*) FROM lead_groups")).scalar() == 0

        db = Database(old_database)
        try:
            now = datetime(2026, 12, 8, tzinfo=UTC)
            with db.session() as session:
                pilot = Pilot(name="EMEA", status="running", unit="lead", control_share=0.1, salt="s", threshold=75,
                              horizon=2000, effect=0.05, started_at=now, created_by="test")
                session.add(pilot)
                session.flush()
                insert_groups(session, pilot.id, {1: (CONTROL, None), 2: (PILOT, "owner-7")}, now)
                # Insert-only: a second assignment of lead 1 changes nothing.
                insert_groups(session, pilot.id, {1: (PILOT, None), 3: (PILOT, None)}, now)
                session.add(PilotFacts(lead_id=3, first_touch_at=now, amount=5000.0, won=True, closed_at=now,
                                       read_at=now))
            with db.session() as session:
                assert groups_of(session, [1, 2, 3]) == {1: CONTROL, 2: PILOT, 3: PILOT}
                assert session.get(LeadGroup, 2).cluster == "owner-7"
                session.delete(session.get(Lead, 3))
            with db.session() as session:  # ON DELETE CASCADE: a forgotten lead takes its group along
                assert groups_of(session, [1, 2, 3]) == {1: CONTROL, 2: PILOT}
                assert session.get(PilotFacts, 3) is None
                assert session.scalar(select(Pilot.name)) == "EMEA"
        finally:
            db.dispose()

        command.downgrade(alembic_config(old_database), "0008")
        assert not {"pilots", "lead_groups", "pilot_facts"} & set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert sorted(conn.execute(text("SELECT id FROM leads")).scalars()) == [1, 2]
        upgrade(old_database)
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()
