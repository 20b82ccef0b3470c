"""The overview's charts in a real browser after `leadbridge run` (sandbox mode: the sandbox CRM and the traffic
simulator feeding it) has run for about a minute: every total a chart states equals what the database holds for
the same window, counted here independently of the code that measured it. Screenshots go to test-output/admin/."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import func, select

from core.runtime import sqlite_url
from storage import measurements as m
from storage.db import Database
from storage.models import InboxEvent, Lead, Measurement, OutboxItem, ScoreHistory
from tests.admin.conftest import PASSWORD, shot
from tests.processes import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
EMAIL = "charts@example.com"
TRAFFIC_SECONDS = 60


@pytest.fixture()
def product(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`leadbridge run` in sandbox mode on embedded Redis and SQLite of its own, with an admin user."""
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADBRIDGE_TEST_", "REDIS", "DATABASE"))}
    env.update({"LEADBRIDGE_PORT": str(port), "LEADBRIDGE_DATA_DIR": str(data), "LEADBRIDGE_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(REPO), "LEADBRIDGE_WEB_WORKERS": "1", "LEADBRIDGE_SANDBOX_PORT": str(free_port()),
                "LEADBRIDGE_SIMULATOR_RATE": "10", "LEADBRIDGE_RUN_SUMMARY_SECONDS": "0"})
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run"], env=env, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    db = None
    try:
        wait_for(lambda: "leadbridge is running at" in log.read_text() or proc.poll() is not None, 180,
                 "`leadbridge run` starting")
        assert proc.poll() is None, log.read_text()[-3000:]
        added = subprocess.run([sys.executable, "-m", "cli.main", "users", "add", "--email", EMAIL, "--role", "admin",
                                "--password-stdin"], input=PASSWORD + "\n", env=env, cwd=tmp_path, text=True,
                               capture_output=True, timeout=120, check=False)
        assert added.returncode == 0, added.stdout + added.stderr
        db = Database(sqlite_url(data))
        yield {"base": f"http://127.0.0.1:{port}", "db": db, "proc": proc, "log": log}
    finally:
        for child in _simulators(proc):
            child.send_signal(signal.SIGCONT)  # a paused simulator must be able to stop
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if db is not None:
            db.dispose()


def _simulators(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in family:
        try:
            if "simulate" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _quiet(db: Database) -> tuple[int, int, int]:
    """(pending inbox rows, score history rows, sent outbox rows): unchanged for a few seconds means settled."""
    with db.session() as session:
        return (session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.status == "pending")) or 0,
                session.scalar(select(func.count()).select_from(ScoreHistory)) or 0,
                session.scalar(select(func.count()).select_from(OutboxItem)) or 0)


def _settle(db: Database, seconds: float = 8.0, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    last, since = _quiet(db), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _quiet(db)
        if now != last or now[0]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
    raise AssertionError(f"the pipeline did not settle: {last}")


def totals(page: Any, card: str) -> dict[str, str]:
    """The totals a chart's card states (data-total -> data-value), read from the rendered page."""
    return {el.get_attribute("data-total"): el.get_attribute("data-value")
            for el in page.query_selector_all(f"#{card} .total")}


def window(page: Any, selector: str) -> tuple[datetime, datetime]:
    element = page.query_selector(selector)
    return (datetime.fromisoformat(element.get_attribute("data-start")),
            datetime.fromisoformat(element.get_attribute("data-end")))


def _count(session: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(InboxEvent).where(*where)) or 0)


@pytest.mark.slow
def test_overview_chart_totals_equal_the_database_after_a_minute_of_traffic(product: dict[str, Any],
                                                                          browser_page: Any) -> None:
    db: Database = product["db"]
    base: str = product["base"]
    started = time.monotonic()

    def traffic_measured() -> bool:
        with db.session() as session:
            rows = session.scalars(select(Measurement).where(Measurement.received > 0)).all()
            written = session.scalar(select(func.count()).select_from(OutboxItem)
                                     .where(OutboxItem.sent_at.is_not(None)))
        return len(rows) >= 2 and bool(written) and time.monotonic() - started >= TRAFFIC_SECONDS

    wait_for(traffic_measured, 240, "a minute of traffic, measured, with CRM writes", interval=2)
    # Pause the traffic so the leads stop changing while the page and the database are compared (the time
    # series need no pause: a measured window is closed).
    simulators = _simulators(product["proc"])
    assert simulators, "no simulator among `leadbridge run`'s children"
    for child in simulators:
        child.send_signal(signal.SIGSTOP)
    _settle(db)
    # And one more measured period after the pause, so the window covers the whole run.
    with db.session() as session:
        newest = m.latest_slot(session)
    wait_for(lambda: _latest(db) != newest, 90, "the next measurement", interval=1)

    page = browser_page
    page.goto(base + "/admin/login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/admin/")
    page.goto(base + "/admin/?range=hour")
    shot(page, "charts-overview-hour")
    start, end = window(page, "#chart-window")
    events, backlog, latency = totals(page, "events"), totals(page, "backlog-chart"), totals(page, "latency-chart")
    scores, grades = totals(page, "score-distribution"), totals(page, "grade-mix")
    reasons_total = totals(page, "top-reasons")
    reason_rows = [(row.query_selector("td").inner_text(), int(row.query_selector_all("td")[1].inner_text()
                                                               .replace(",", "")))
                   for row in page.query_selector_all("#top-reasons tbody tr")]
    day_start, day_end = window(page, "#grades-today")
    week_start, week_end = window(page, "#grades-week-ago")

    with db.session() as session:
        received = _count(session, InboxEvent.received_at >= start, InboxEvent.received_at < end)
        waits = session.execute(select(InboxEvent.received_at, InboxEvent.processed_at).where(
            InboxEvent.processed_at >= start, InboxEvent.processed_at < end)).all()
        batches = session.scalars(select(OutboxItem.payload).where(
            OutboxItem.sent_at >= start, OutboxItem.sent_at < end, OutboxItem.object_type == "batch",
            OutboxItem.status.in_(("sent", "partial")))).all()
        samples = session.scalars(select(Measurement.backlog).where(
            Measurement.started_at >= start, Measurement.started_at < end, Measurement.backlog.is_not(None))).all()
        leads = session.execute(select(Lead.score, Lead.grade, Lead.scored_at, Lead.reasons, Lead.id)
                                .where(Lead.score.is_not(None))).all()
        week_rows = session.execute(select(ScoreHistory.lead_id, ScoreHistory.id, ScoreHistory.grade).where(
            ScoreHistory.created_at >= week_start, ScoreHistory.created_at < week_end)).all()
        first_received = session.scalar(select(func.min(InboxEvent.received_at)))

    # The window covers the whole run, and traffic really flowed through every stage.
    assert first_received is not None and start <= first_received and received > 100
    written = sum(int((p or {}).get("written") or 0) for p in batches)
    assert written > 0 and len(waits) > 100
    assert int(events["received"]) == received
    assert int(events["processed"]) == len(waits)
    assert int(events["written"]) == written
    assert int(backlog["backlog_peak"]) == max(samples)
    # Latency: as many samples as events processed and writes acknowledged, and the same p50/p95 as a histogram of
    # the database's own timestamps gives.
    ingest = m.histogram_of((done - got).total_seconds() for got, done in waits)
    assert int(latency["ingest_count"]) == len(waits)
    for q, name in ((0.5, "ingest_p50"), (0.95, "ingest_p95")):
        assert float(latency[name]) == pytest.approx(m.histogram_quantile(ingest, q))
    acks = [ms for p in batches for ms in (p or {}).get("latency_ms") or ()]
    assert int(latency["write_count"]) == len(acks)

    # Scores, grades and reasons: the leads as they are now (the traffic is paused).
    assert int(scores["scored"]) == len(leads) > 0
    bands = Counter(min(score // 10, 9) for score, *_ in leads)
    for band in range(10):
        label = f"{band * 10}-{band * 10 + 9 if band < 9 else 100}"
        assert int(scores.get(f"band {label}", "0")) == bands.get(band, 0), label
    today = Counter(grade or "none" for score, grade, scored_at, *_ in leads if day_start <= scored_at < day_end)
    assert int(grades["today"]) == sum(today.values()) == len(leads)
    assert {k.split(" ", 1)[1]: int(v) for k, v in grades.items() if k.startswith("today ")} == dict(today)
    last_that_day: dict[int, tuple[int, str | None]] = {}
    for lead_id, row_id, grade in week_rows:
        if lead_id not in last_that_day or row_id > last_that_day[lead_id][0]:
            last_that_day[lead_id] = (row_id, grade)
    assert int(grades["week_ago"]) == len(last_that_day)  # the product is a minute old: nothing a week ago
    newest_first = sorted(leads, key=lambda lead: (lead[2], lead[4]), reverse=True)[:5000]
    shown = Counter(reason for lead in newest_first for reason in set(lead[3] or ()))
    assert int(reasons_total["reason_leads"]) == len(newest_first)
    assert reason_rows and all(shown[text] == count for text, count in reason_rows)
    assert reason_rows[0][1] == max(shown.values())

    # The longer ranges cover the same run: their totals are the database's too.
    for name in ("day", "week"):
        page.goto(f"{base}/admin/?range={name}")
        assert int(totals(page, "events")["received"]) == _received_in(db, *window(page, "#chart-window"))
        shot(page, f"charts-overview-{name}")

    # The lead page: the busiest lead's score history as steps, with its events.
    with db.session() as session:
        lead_id, scored = session.execute(select(ScoreHistory.lead_id, func.count()).group_by(ScoreHistory.lead_id)
                                          .order_by(func.count().desc()).limit(1)).one()
    page.goto(f"{base}/admin/leads/{lead_id}")
    assert page.locator("#score-history svg.steps circle.dot").count() == scored
    assert re.match(rf"{scored} scores? and \d+ events?", page.inner_text("#history-totals"))
    shot(page, "charts-lead")


def _latest(db: Database) -> datetime | None:
    with db.session() as session:
        return m.latest_slot(session)


def _received_in(db: Database, start: datetime, end: datetime) -> int:
    with db.session() as session:
        return _count(session, InboxEvent.received_at >= start, InboxEvent.received_at < end)
