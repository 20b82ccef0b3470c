"""Drill (d): the database goes away under load; tasks retry and complete.

PostgreSQL: every backend of the test database is terminated (pg_terminate_backend), again and again for
a few seconds, so connections die mid-transaction. SQLite: the test holds an exclusive transaction for a
few seconds, so every writer waits on the lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

import pytest

from tests.drills.conftest import Stack, report

BROKER_DB = 11
OUTAGE_SECONDS = 5.0


def terminate_backends(database_url: str, seconds: float, done: threading.Event, killed: list[int]) -> None:
    """Kill every other connection to the database, every 0.2 s, for `seconds`."""
    import psycopg

    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + seconds
    with psycopg.connect(plain, autocommit=True) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
            killed[0] += sum(1 for (ok,) in rows if ok)
            time.sleep(0.2)
    killed.append(time.monotonic())  # when the database was left alone again
    done.set()


def lock_sqlite(database_url: str, seconds: float, done: threading.Event, locked: list[int]) -> None:
    """Hold an exclusive transaction on the SQLite file for `seconds`."""
    path = database_url.split("///", 1)[1]
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        locked[0] = 1
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()
        locked.append(time.monotonic())  # when the lock was released
        done.set()


@pytest.mark.slow
def test_database_outage(make_stack: Callable[..., Stack], database_url: str) -> None:
    stack = make_stack(BROKER_DB)
    stack.start(workers=1)
    people = stack.add_people()
    stack.send_events(batches=3, batch_size=25)
    postgres = database_url.startswith("postgresql")
    done = threading.Event()
    hits = [0]
    outage = threading.Thread(target=terminate_backends if postgres else lock_sqlite,
                              args=(database_url, OUTAGE_SECONDS, done, hits), daemon=True)
    outage.start()
    # Traffic keeps arriving during the outage (a refused delivery is retried by the sender, as CRMs do).
    accepted = stack.send_events(batches=9, batch_size=25, pause=OUTAGE_SECONDS / 10)
    done.wait(OUTAGE_SECONDS + 30)
    outage.join()
    stack.converge(90, "every task completing after the database came back")
    recovery = time.monotonic() - hits[1]  # from the end of the outage to everything consistent
    counts = stack.assert_exactly_once()
    assert hits[0], "the drill did not disturb the database"
    report("d database outage", backend="postgresql" if postgres else "sqlite", recovery_since_back=recovery,
           outage=OUTAGE_SECONDS, connections_killed=hits[0] if postgres else "-", people=people,
           events_sent=accepted, **counts)
    assert recovery < 100
