"""Alembic environment: the URL comes from the caller (storage.migrate), never from alembic.ini."""

from __future__ import annotations

from alembic import context

from storage.db import make_engine
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Apply migrations on a live connection (batch mode so ALTERs also work on SQLite)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # Batch mode rebuilds a SQLite table (copy, drop, rename). With foreign keys enforced, dropping the old
    # table would run the ON DELETE actions of every row referencing it (score history, outcomes, CRM ids):
    # enforcement is off while migrating (the pragma only takes effect outside a transaction).
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            _pragma(connection, "PRAGMA foreign_keys=ON")


def _pragma(connection, statement: str) -> None:  # type: ignore[no-untyped-def]
    connection.exec_driver_sql(statement)
    connection.commit()  # ends the transaction SQLAlchemy began, so Alembic's own commits the migration


run_migrations_online()
