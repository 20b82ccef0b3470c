"""Engines and sessions: SQLite in WAL mode by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# Pages of WAL after which a committing connection checkpoints by itself. The background checkpointer
# keeps the WAL far below this; it is only the bound should that thread ever fall behind.
WAL_AUTOCHECKPOINT_PAGES = 20_000
CHECKPOINT_INTERVAL = 1.0  # seconds between background checkpoints
# Under constant writes a lock-free checkpoint never catches up with the last frame, so the WAL is never
# reused and grows until a commit checkpoints. Past this many pages the checkpointer takes the writer lock
# for one short pass (only the frames since its last one), and the next commit starts the WAL afresh.
WAL_RESTART_PAGES = 4096


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
    # A checkpoint run by a commit (every 1,000 pages by default) copies and fsyncs the WAL while a
    # webhook waits for its answer: ~30 ms on one commit in ten. _Checkpointer does it off that path.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.close()


class Database:
    """An engine plus a session factory; one per process."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        on_disk = url.startswith("sqlite") and ":memory:" not in url
        self._writer = _SqliteWriteLock(url) if on_disk else None
        self._checkpointer = _Checkpointer(self._writer) if self._writer is not None else None

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error.

        `write=True` marks a write transaction: on SQLite it holds the database's writer lock for the
        whole transaction, so concurrent writers queue on a lock instead of SQLite's sleep-and-retry.
        """
        lock = self._writer if write and self._writer is not None else contextlib.nullcontext()
        if write and self._checkpointer is not None:
            self._checkpointer.ensure_running()
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
        """Close all pooled connections (after fork, or at shutdown) and stop the background checkpointer."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()


class _SqliteWriteLock:
    """One writer at a time across threads (a mutex) and processes (flock on a file beside the database).

    SQLite allows one writer; others wait in its busy handler, which sleeps in growing steps (up to
    100 ms). Queuing on a lock instead wakes the next writer the moment the previous one commits.
    """

    def __init__(self, url: str) -> None:
        self.database_path = url.split("///", 1)[-1].split("?", 1)[0]
        self.path = self.database_path + ".writelock"
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


class _Checkpointer:
    """A daemon thread per writing process that moves WAL pages into the database file every second.

    PASSIVE checkpoints wait for no reader or writer, so commits neither block on it nor pay for it.
    Started on the first write session (and again in a forked child, which does not inherit threads).
    """

    def __init__(self, writer: _SqliteWriteLock, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.writer = writer
        self.interval = interval
        self._pid = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.checkpoints = 0  # completed checkpoint calls, for tests and curiosity

    def ensure_running(self) -> None:
        """Start the thread in this process unless it runs already."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(self._stop,), name="sqlite-checkpoint", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def stop(self) -> None:
        """Ask the thread to finish (it exits within one interval)."""
        self._stop.set()
        self._pid = 0

    def _run(self, stop: threading.Event) -> None:
        connection = sqlite3.connect(self.writer.database_path, timeout=5, isolation_level=None, check_same_thread=False)
        try:
            while not stop.wait(self.interval):
                try:
                    _busy, wal_pages, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if wal_pages >= WAL_RESTART_PAGES:
                        with self.writer:
                            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy or the file went away: try again next time
                    log.debug("sqlite.checkpoint_skipped", extra={"error": type(exc).__name__})
        finally:
            connection.close()
