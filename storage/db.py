"""Engines and sessions: SQLite in WAL mode by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url`; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; NORMAL sync is durable across process crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """An engine plus a session factory; one per process."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = _SqliteWriteLock(url) if url.startswith("sqlite") and ":memory:" not in url else None

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error.

        `write=True` marks a write transaction: on SQLite it holds the database's writer lock for the
        whole transaction, so concurrent writers queue on a lock instead of SQLite's sleep-and-retry.
        """
        lock = self._writer if write and self._writer is not None else contextlib.nullcontext()
        with lock:
            session = self.sessions()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    def ping(self) -> None:
        """Run a trivial query; raises when the database does not answer."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close all pooled connections (after fork, or at shutdown)."""
        self.engine.dispose()


class _SqliteWriteLock:
    """One writer at a time across threads (a mutex) and processes (flock on a file beside the database).

    SQLite allows one writer; others wait in its busy handler, which sleeps in growing steps (up to
    100 ms). Queuing on a lock instead wakes the next writer the moment the previous one commits.
    """

    def __init__(self, url: str) -> None:
        self.path = url.split("///", 1)[-1] + ".writelock"
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._mutex.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():  # a forked child needs its own descriptor
                self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()
