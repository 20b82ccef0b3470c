"""The overview's charts and their totals, the range switch, the JSON behind them, and the lead page's step chart:
drawn from stored measurements, leads and score history in the test database."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from core.records import utcnow
from storage import measurements as m
from storage.db import Database
from storage.models import InboxEvent, Lead, Measurement, ScoreHistory
from tests.crm_ids import with_ids


def totals(html: str) -> dict[str, str]:
    """Every total a chart states in its text, by name (data-total), as its raw value."""
    return dict(re.findall(r'data-total="([^"]+)" data-value="([^"]*)"', html))


@pytest.fixture()
def api(admin_app: Any, make_token: Callable[[str], str]) -> Callable[..., Any]:
    """GET on the API with a viewer token."""
    client = admin_app.test_client()
    headers = {"Authorization": f"Bearer {make_token('viewer')}"}
    return lambda path, **kw: client.get("/api" + path, headers=headers, **kw)


def _measurement(start: Any, seconds: int, i: int) -> Measurement:
    return Measurement(seconds=seconds, started_at=start, received=100 + i, processed=90 + i, written=i,
                       backlog=i * 3 if i % 2 else None, write_backlog=i, ingest_latency=m.histogram_of(
                           [0.02 * (1 + i % 4)] * (90 + i)), write_latency=m.histogram_of([0.4 + i / 100] * i))


@pytest.fixture()
def measured(clean_db: Database) -> dict[str, Any]:
    """Twenty 30-second rows ending at the last whole period, and an hour row two days before them."""
    end = m.slot_start(utcnow())
    rows = [_measurement(end - timedelta(seconds=30 * (k + 1)), 30, k) for k in range(20)]
    old = _measurement(m.slot_start(end - timedelta(days=2), 3600), 3600, 501)
    with clean_db.session() as session:
        session.add_all([*rows, old])
    return {"end": end, "rows": rows, "old": old}


def test_each_range_draws_and_totals_the_measurements_in_its_window(admin_client: Any, api: Any,
                                                                    measured: dict[str, Any]) -> None:
    rows, old, end = measured["rows"], measured["old"], measured["end"]
    hour = admin_client.get("/admin/?range=hour")
    assert hour.status_code == 200
    html = hour.text
    assert f'data-end="{end.isoformat()}"' in html and f'data-start="{(end - timedelta(hours=1)).isoformat()}"' in html
    shown = totals(html)
    assert int(shown["received"]) == sum(r.received for r in rows)
    assert int(shown["processed"]) == sum(r.processed for r in rows)
    assert int(shown["written"]) == sum(r.written for r in rows)
    assert int(shown["backlog_peak"]) == max(r.backlog for r in rows if r.backlog is not None)
    assert int(shown["backlog_last"]) == rows[1].backlog  # the newest row with a sample (rows[0] has none)
    merged = m.merge_histograms(r.ingest_latency for r in rows)
    assert int(shown["ingest_count"]) == sum(merged)
    assert float(shown["ingest_p95"]) == pytest.approx(m.histogram_quantile(merged, 0.95))
    assert int(shown["write_count"]) == sum(r.written for r in rows)
    # Each chart is an SVG drawn here, with the range links; the hour row two days back is outside this window.
    for card in ("events", "backlog-chart", "latency-chart", "score-distribution", "grade-mix"):
        assert re.search(rf'id="{card}">\s*<h2>[^<]+</h2>\s*<svg class="chart', html), card
    assert 'href="/admin/?range=week"' in html and 'aria-current="page">last hour<' in html
    assert "minutes old" not in html and "nothing measured yet" not in html

    week = totals(admin_client.get("/admin/?range=week").text)
    assert int(week["received"]) == sum(r.received for r in rows) + old.received
    assert int(week["backlog_peak"]) == old.backlog

    series = api("/overview/series", query_string={"range": "day"})
    assert series.status_code == 200
    body = series.json
    assert body["bin_seconds"] == 600 and len(body["bins"]) == 144 and body["measurements"] == 20
    assert body["received"] == sum(r.received for r in rows) and body["end"].startswith(end.strftime("%Y-%m-%dT%H:%M"))
    assert sum(b["received"] for b in body["bins"]) == body["received"]
    # The bars end where the window ends, so the last ten minutes are exactly the last bar.
    assert [b["recorded"] for b in body["bins"]] == [False] * 143 + [True]
    assert body["bins"][-1]["received"] == body["received"]
    assert len(api("/overview/series").json["bins"]) == 120  # the last hour by default


def test_an_unknown_range_is_refused_with_a_message(admin_client: Any, api: Any, clean_db: Database) -> None:
    page = admin_client.get("/admin/?range=month")
    assert page.status_code == 400 and "range must be one of hour, day, week" in page.text
    answer = api("/overview/series", query_string={"range": "month"})
    assert answer.status_code == 400 and answer.json["error"] == "invalid_request"
    # Before beat has measured anything the charts say so instead of drawing nothing.
    empty = admin_client.get("/admin/")
    assert empty.status_code == 200 and "nothing measured yet" in empty.text
    assert totals(empty.text)["received"] == "0"
    # Measurements that stopped coming are shown as such, not as a quiet pipeline.
    with clean_db.session() as session:
        session.add(_measurement(m.slot_start(utcnow() - timedelta(minutes=20)), 30, 1))
    stale = admin_client.get("/admin/").text
    assert re.search(r"the newest measurement is (19|20) minutes old: is `leadbridge beat` running\?", stale)


def test_lead_charts_count_scores_grades_today_and_a_week_before_and_reasons(admin_client: Any, api: Any,
                                                                             clean_db: Database) -> None:
    now = utcnow()
    week = now - timedelta(days=7)
    leads = [
        Lead(email="a@x.io", score=5, grade="A", reasons=["+ requested a demo", "- free e-mail domain"],
             scored_at=now - timedelta(hours=1), properties={}),
        Lead(email="b@x.io", score=15, grade="A", reasons=["+ requested a demo"],
             scored_at=now - timedelta(hours=2), properties={}),
        Lead(email="c@x.io", score=95, grade="B", reasons=["+ requested a demo", "+ viewed pricing 3 times"],
             scored_at=now - timedelta(hours=23), properties={}),
        Lead(email="d@x.io", score=100, grade=None, reasons=[], scored_at=now - timedelta(hours=3), properties={}),
        Lead(email="e@x.io", score=50, grade="D", reasons=["- free e-mail domain"],
             scored_at=now - timedelta(days=3), properties={}),  # scored, but not in the last 24 h
        Lead(email="f@x.io", properties={}),  # never scored
    ]
    with clean_db.session() as session:
        session.add_all(leads)
        session.flush()
        a, b, c, d = (lead.id for lead in leads[:4])

        def scored(lead_id: int, at: Any, grade: str | None) -> ScoreHistory:
            return ScoreHistory(lead_id=lead_id, score=40, probability=0.4, grade=grade, reasons=[],
                                model_version="v1", trigger="event", feature_time=at, created_at=at)

        session.add_all([
            scored(a, week - timedelta(hours=12), "C"), scored(a, week - timedelta(hours=2), "B"),  # last of the day: B
            scored(b, week - timedelta(hours=23), "F"),
            scored(c, week + timedelta(hours=1), "A"),  # after that day
            scored(d, week - timedelta(days=2), "A"),  # before it
        ])
    html = admin_client.get("/admin/").text
    shown = totals(html)
    assert shown["scored"] == "5"
    assert (shown["band 0-9"], shown["band 10-19"], shown["band 50-59"], shown["band 90-100"]) == ("1", "1", "1", "2")
    assert (shown["today"], shown["today A"], shown["today B"], shown["today none"]) == ("4", "2", "1", "1")
    assert "today D" not in shown
    assert (shown["week_ago"], shown["week_ago B"], shown["week_ago F"]) == ("2", "1", "1")
    assert "week_ago C" not in shown and "week_ago A" not in shown
    reasons = re.findall(r'<td class="(?:pos|neg|neu)">([^<]+)</td><td>(\d+)</td>', html)
    assert reasons[:2] == [("+ requested a demo", "3"), ("- free e-mail domain", "2")]
    assert shown["reason_leads"] == "5"

    body = api("/overview/leads").json
    assert body["scored"] == 5 and body["today"]["grades"] == {"A": 2, "B": 1, "none": 1}
    assert body["week_ago"]["grades"] == {"B": 1, "F": 1} and body["week_ago"]["leads"] == 2
    assert [band["leads"] for band in body["score_bands"]] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert body["reasons"][0] == {"reason": "+ requested a demo", "leads": 3}


def test_the_lead_page_draws_the_score_as_steps_with_the_events_that_moved_it(admin_client: Any,
                                                                              clean_db: Database) -> None:
    now = utcnow()
    lead = Lead(email="steps@x.io", score=70, grade="B", reasons=["+ requested a demo"], scored_at=now,
                properties={})
    with clean_db.session() as session:
        session.add_all(with_ids(lead, hubspot="4242"))
        session.flush()
        for minutes, score in ((30, 20), (20, 45), (5, 70)):
            at = now - timedelta(minutes=minutes)
            session.add(ScoreHistory(lead_id=lead.id, score=score, probability=score / 100, grade="B", reasons=[],
                                     model_version="v1", trigger="event", feature_time=at, created_at=at))
        for i, (minutes, kind) in enumerate(((21, "page"), (6, "demo_requested"))):
            at = now - timedelta(minutes=minutes)
            session.add(InboxEvent(dedupe_key=f"steps-{i}", crm="hubspot", object_type="contact", object_id="4242",
                                   event_type=kind, email=None, properties={}, occurred_at=at, received_at=at,
                                   processed_at=at, status="done", attempts=1))
    html = admin_client.get(f"/admin/leads/{lead.id}").text
    chart = re.search(r'<svg class="chart steps".*?</svg>', html, re.DOTALL)
    assert chart is not None
    svg = chart.group(0)
    assert svg.count('class="line step"') == 1 and svg.count('class="dot"') == 3
    notes = re.findall(r'class="dot"><title>([^<]+)</title>', svg)
    assert "score 20 · first score (event)" in notes[0]
    assert "score 45 · +25 (event) after page from hubspot" in notes[1]
    assert "score 70 · +25 (event) after demo_requested from hubspot" in notes[2]
    events = re.findall(r'class="event"><title>([^<]+)</title>', svg)
    assert len(events) == 2 and "demo_requested from hubspot" in events[1]
    assert "3 scores and 2 events; 20 on" in html


def test_received_events_are_counted_in_every_inbox_status() -> None:
    # Received events are counted through the (status, received_at) index, one status at a time: a status the
    # deliveries pages know and the measurements do not would silently drop its rows from the charts.
    from services.deliveries import INBOX_STATUSES

    assert set(INBOX_STATUSES) <= set(m.INBOX_STATUSES)
