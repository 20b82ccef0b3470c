"""The feature schema in the database: versions, history, audit, refusals that change nothing, migration 0005."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import delete, inspect, select, text

from core.feature_schema import FeatureSchema, MappedField, SchemaError
from storage.audit import list_entries
from storage.db import Database, make_engine
from storage.feature_schema import (
    active_schema,
    publish_schema_version,
    published_schema_version,
    save_schema,
    schema_history,
)
from storage.migrate import alembic_config, upgrade
from storage.models import AuditEntry, FeatureSchemaVersion

BUDGET = MappedField("hubspot", "contacts", "budget", "numeric", "budget", label="Budget")
TRIAL = MappedField("salesforce", "Lead", "Trial_Start__c", "date", "trial_age", fit=True)
RATING = MappedField("salesforce", "Lead", "Rating", "categorical", "rating", top_n=4)


@pytest.fixture()
def clean(db: Database) -> Iterator[Database]:
    """No saved schema before and after the test (other tests expect the built-ins only)."""
    def wipe() -> None:
        with db.session(write=True) as session:
            session.execute(delete(FeatureSchemaVersion))
            session.execute(delete(AuditEntry).where(AuditEntry.action == "fields.schema"))
    wipe()
    yield db
    wipe()


def test_versions_round_trip_and_history(clean: Database) -> None:
    with clean.session() as session:
        assert active_schema(session) == FeatureSchema.empty()
    with clean.session(write=True) as session:
        first = save_schema(session, [BUDGET, TRIAL], actor="ana@acme.io")
    with clean.session(write=True) as session:
        again = save_schema(session, [BUDGET, TRIAL], actor="ana@acme.io")  # nothing changed: no version
        second = save_schema(session, [BUDGET, RATING], actor="ben@acme.io")
    with clean.session() as session:
        active = active_schema(session)
        history = schema_history(session)
        entries, total = list_entries(session, action="fields.schema")
    assert (first.version, again.version, second.version) == (1, 1, 2)
    assert active == second and active.fields == (BUDGET, RATING)
    assert active.feature_names[-2:] == ("budget", "rating")
    assert active.fingerprint == second.fingerprint != first.fingerprint
    assert [(v.schema.version, v.actor) for v in history] == [(2, "ben@acme.io"), (1, "ana@acme.io")]
    assert history[1].schema.fields == (BUDGET, TRIAL) and history[0].created_at.tzinfo is not None
    assert total == 2
    newest = entries[0]
    assert newest.actor == "ben@acme.io" and newest.before["version"] == 1 and newest.after["version"] == 2
    assert newest.after["changes"] == ["mapped salesforce Lead.Rating as categorical feature rating",
                                       "unmapped salesforce Lead.Trial_Start__c (feature trial_age)"]


@pytest.mark.parametrize("fields, message", [
    ([BUDGET, MappedField("hubspot", "contacts", "x", "money", "x")], "unknown kind 'money'"),  # type: ignore[arg-type]
    ([MappedField("hubspot", "contacts", "x", "categorical", "x", top_n=9999)], "top_n"),
    ([BUDGET, MappedField("hubspot", "contacts", "budget2", "numeric", "budget")], "duplicate feature 'budget'"),
    ([MappedField("hubspot", "contacts", "industry", "categorical", "industry")], "built-in feature"),
])
def test_bad_input_is_refused_and_nothing_changes(clean: Database, fields: list[MappedField], message: str) -> None:
    with clean.session(write=True) as session:
        save_schema(session, [TRIAL], actor="ana@acme.io")
    with pytest.raises(SchemaError, match=message), clean.session(write=True) as session:
        save_schema(session, fields, actor="mallory@acme.io")
    with clean.session() as session:
        assert active_schema(session).fields == (TRIAL,)
        assert [v.schema.version for v in schema_history(session)] == [1]
        assert list_entries(session, action="fields.schema", actor="mallory@acme.io")[1] == 0


def test_published_version(redis_client) -> None:
    redis_client.delete("lb:schema:version")
    assert published_schema_version(redis_client) is None
    publish_schema_version(redis_client, 7)
    assert published_schema_version(redis_client) == 7
    redis_client.delete("lb:schema:version")


@pytest.mark.parametrize("old_database", ["0004"], indirect=True)
def test_migration_0005_up_and_down(old_database: str) -> None:
    engine = make_engine(old_database)
    try:
        assert "feature_schemas" not in inspect(engine).get_table_names()
        upgrade(old_database)
        columns = {c["name"] for c in inspect(engine).get_columns("feature_schemas")}
        assert columns == {"id", "version", "fields", "fingerprint", "actor", "created_at"}
        database = Database(old_database)
        try:
            with database.session(write=True) as session:
                save_schema(session, [BUDGET], actor="ana@acme.io")
            with database.session() as session:
                assert active_schema(session).fields == (BUDGET,)
                assert session.scalars(select(FeatureSchemaVersion.fingerprint)).one() == \
                    FeatureSchema(1, (BUDGET,)).fingerprint
        finally:
            database.dispose()
        command.downgrade(alembic_config(old_database), "0004")
        assert "feature_schemas" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
        upgrade(old_database)
        assert "feature_schemas" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
