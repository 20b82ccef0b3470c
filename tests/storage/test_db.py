"""SQLite housekeeping: the background checkpointer keeps commits free of checkpoints and the WAL bounded."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from storage import db as db_module
from storage.db import Database


def test_checkpointer_moves_the_wal_into_the_database_and_lets_it_restart(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(db_module, "WAL_RESTART_PAGES", 200)
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with database.session(write=True) as session:
            session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        main_file, wal_file = tmp_path / "c.db", tmp_path / "c.db-wal"
        size_before = main_file.stat().st_size
        deadline = time.monotonic() + 8
        n = 0
        # Constant writes, as under webhook load: a commit never checkpoints by itself (limit 20,000 pages).
        while time.monotonic() < deadline:
            with database.session(write=True) as session:
                session.execute(text("INSERT INTO t (body) VALUES (:b)"), [{"b": "x" * 3000} for _ in range(20)])
            n += 20
            time.sleep(0.005)  # a heavy webhook load (~8 MB/s of WAL), not a disk-bound loop
        assert database._checkpointer is not None and database._checkpointer.checkpoints >= 3
        # The rows reached the database file without any commit checkpointing...
        assert main_file.stat().st_size > size_before + 1_000_000
        # ...and the WAL was reused from its start along the way instead of growing with every commit.
        written = n * 3000
        assert written > 10_000_000
        assert wal_file.stat().st_size < written / 4, (wal_file.stat().st_size, written)
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == n
    finally:
        database.dispose()
