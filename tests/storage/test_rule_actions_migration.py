"""Migration 0010: existing rules keep posting to their channel (actions [slack_channel]), outbox rows keep their
data and get a unique action key column; the downgrade removes both columns and keeps the rows."""

from __future__ import annotations

import json

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from storage.db import make_engine
from storage.migrate import alembic_config, current_revision, upgrade

AT = "2026-12-01 10:00:00.000000"


@pytest.mark.parametrize("old_database", ["0009"], indirect=True)
def test_rules_keep_their_channel_post_and_back(old_database: str) -> None:
    engine = make_engine(old_database)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO alert_rules (id, name, threshold, channel, cooldown_minutes, routing, "
                              "enabled, created_at) VALUES (1, 'Hot', 80, '#sales', 60, :routing, true, :at)"),
                         {"routing": json.dumps({"segment": {"grades": ["A"]}}), "at": AT})
            conn.execute(text("INSERT INTO outbox (id, target, kind, payload, status, attempts, created_at, "
                              "updated_at) VALUES (1, 'hubspot', 'fields', '{}', 'sent', 1, :at, :at)"), {"at": AT})
        upgrade(old_database, "0010")
        assert current_revision(engine) == "0010"
        with engine.connect() as conn:
            actions, routing = conn.execute(text("SELECT actions, routing FROM alert_rules")).one()
            assert conn.execute(text("SELECT action_key, status FROM outbox")).one() == (None, "sent")
        loads = (lambda v: json.loads(v) if isinstance(v, str) else v)
        assert loads(actions) == [{"kind": "slack_channel", "params": {}}]
        assert loads(routing) == {"segment": {"grades": ["A"]}}
        with engine.begin() as conn:
            for row_id in (2, 3):
                conn.execute(text("INSERT INTO outbox (id, target, kind, payload, status, attempts, created_at, "
                                  "updated_at) VALUES (:id, 'slack', 'fields', '{}', 'sent', 1, :at, :at)"),
                             {"id": row_id, "at": AT})  # NULL keys do not clash
        with pytest.raises(IntegrityError), engine.begin() as conn:
            for row_id in (4, 5):
                conn.execute(text("INSERT INTO outbox (id, target, kind, payload, status, attempts, created_at, "
                                  "updated_at, action_key) VALUES (:id, 'slack', 'action', '{}', 'pending', 0, "
                                  ":at, :at, 'lbsamekey')"), {"id": row_id, "at": AT})

        command.downgrade(alembic_config(old_database), "0009")
        assert "actions" not in {c["name"] for c in inspect(engine).get_columns("alert_rules")}
        assert "action_key" not in {c["name"] for c in inspect(engine).get_columns("outbox")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name, channel FROM alert_rules")).one() == ("Hot", "#sales")
            assert conn.execute(text("SELECT count(*) FROM outbox")).scalar() == 3
        upgrade(old_database, "0010")
        assert current_revision(engine) == "0010"
    finally:
        engine.dispose()
