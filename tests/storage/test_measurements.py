"""Measurements: 30-second rows counted from the tables, histograms that merge, downsampling and retention."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select

from storage import measurements as m
from storage.db import Database
from storage.models import InboxEvent, Measurement, OutboxItem

T0 = datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)  # an hour boundary


@pytest.fixture()
def empty(db: Database) -> Database:
    """The test database without inbox, outbox or measurement rows."""
    with db.session() as session:
        for model in (Measurement, OutboxItem, InboxEvent):
            session.execute(delete(model))
    return db


def test_merged_histograms_give_the_percentiles_of_all_their_samples() -> None:
    rng = random.Random(7)
    parts = [[rng.lognormvariate(-3, 1.2) for _ in range(rng.randint(0, 400))] for _ in range(50)]
    merged = m.merge_histograms(m.histogram_of(part) for part in parts)
    everything = m.histogram_of(value for part in parts for value in part)
    assert merged == everything and sum(merged) == sum(len(p) for p in parts)
    for q in (0.5, 0.95, 0.99):
        assert m.histogram_quantile(merged, q) == m.histogram_quantile(everything, q)


def test_quantiles_interpolate_inside_a_bucket_and_stop_at_the_last_bound() -> None:
    counts = m.empty_histogram()
    counts[m.bucket_of(0.03)] = 4  # the (0.025, 0.05] bucket
    assert m.histogram_quantile(counts, 0.5) == pytest.approx(0.0375)
    assert m.histogram_quantile(counts, 1.0) == pytest.approx(0.05)
    assert m.histogram_quantile(m.empty_histogram(), 0.5) is None
    assert m.bucket_of(0.005) == 0 and m.bucket_of(-1) == 0  # a bound belongs to its own bucket
    beyond = m.histogram_of([7200.0])
    assert beyond[-1] == 1 and m.histogram_quantile(beyond, 0.5) == m.LATENCY_BOUNDS[-1]
    with pytest.raises(ValueError):
        m.merge_histograms([[1, 2, 3]])


def _inbox(key: str, received: datetime, processed: datetime | None, status: str = "done") -> InboxEvent:
    return InboxEvent(dedupe_key=key, crm="web", object_type="person", object_id=key, event_type="page",
                      properties={}, occurred_at=received, received_at=received, processed_at=processed,
                      status=status, attempts=1 if processed else 0)


def _batch(sent: datetime | None, written: int, latency_ms: list[int], status: str = "sent") -> OutboxItem:
    return OutboxItem(target="hubspot", kind="fields", object_type="batch", payload={
        "records": written, "written": written, "latency_ms": latency_ms}, status=status, attempts=1,
        created_at=sent or T0, updated_at=sent or T0, sent_at=sent)


def test_a_period_counts_what_the_tables_hold_for_it_exactly(empty: Database) -> None:
    start = T0 + timedelta(seconds=30)
    with empty.session() as session:
        session.add_all([
            _inbox("a", start - timedelta(seconds=40), start + timedelta(seconds=1)),  # received before, processed in
            _inbox("b", start, start + timedelta(seconds=29.9)),  # both in (the start belongs to the period)
            _inbox("c", start + timedelta(seconds=10), None, "pending"),  # received in, waiting
            _inbox("d", start + timedelta(seconds=20), start + timedelta(seconds=30)),  # processed in the next one
            _inbox("e", start + timedelta(seconds=30), start + timedelta(seconds=31)),  # the next period entirely
            _inbox("f", start + timedelta(seconds=5), start + timedelta(seconds=6), "ignored"),  # an echo, processed
            _batch(start + timedelta(seconds=3), 7, [120, 180, 40, 900, 60, 75, 33]),
            _batch(start + timedelta(seconds=29), 2, [1500, 20], status="partial"),
            _batch(start + timedelta(seconds=31), 5, [10] * 5),  # the next period
            _batch(None, 0, [], status="failed"),  # a paused CRM: nothing acknowledged
        ])
    with empty.session() as session:
        figures = m.period_figures(session, start, start + timedelta(seconds=30))
    assert (figures.received, figures.processed, figures.written) == (4, 3, 9)
    assert figures.ingest_latency == m.histogram_of([41.0, 29.9, 1.0])
    assert figures.write_latency == m.histogram_of([0.12, 0.18, 0.04, 0.9, 0.06, 0.075, 0.033, 1.5, 0.02])


def test_beat_records_each_settled_period_once_and_catches_up_missed_ones(empty: Database) -> None:
    with empty.session() as session:
        session.add_all([_inbox(f"r{i}", T0 + timedelta(seconds=3 * i), T0 + timedelta(seconds=3 * i + 1))
                         for i in range(40)])  # 10 per 30 s over two minutes
    now = T0 + timedelta(seconds=120 + m.SETTLE_SECONDS)  # [T0+90, T0+120) has just settled
    with empty.session(write=True) as session:  # the first run measures the last 30 minutes
        assert m.record_slots(session, now, backlog=3, write_backlog=1) == m.CATCH_UP_SLOTS
    with empty.session(write=True) as session:
        assert m.record_slots(session, now, backlog=5, write_backlog=2) == 0  # nothing new: nothing written
        assert m.record_slots(session, now - timedelta(seconds=1), backlog=5, write_backlog=2) == 0
    with empty.session() as session:
        everything = list(session.scalars(select(Measurement).order_by(Measurement.started_at)))
    before, rows = everything[:-4], everything[-4:]
    assert [r.started_at for r in rows] == [T0 + timedelta(seconds=30 * i) for i in range(4)]
    assert [(r.seconds, r.received, r.processed) for r in rows] == [(30, 10, 10)] * 4
    assert all(r.received == r.processed == 0 and r.ingest_latency == m.empty_histogram() for r in before)
    # The backlog is a sample of the moment of recording: it goes with the newest period only.
    assert [(r.backlog, r.write_backlog) for r in everything] == [(None, None)] * (len(everything) - 1) + [(3, 1)]
    assert all(r.ingest_latency == m.histogram_of([1.0] * 10) for r in rows)
    # Beat away for an hour: only the last CATCH_UP_SLOTS periods are measured, the rest stays a gap.
    later = now + timedelta(hours=1)
    with empty.session(write=True) as session:
        assert m.record_slots(session, later, backlog=0, write_backlog=0) == m.CATCH_UP_SLOTS
        assert m.latest_slot(session) == m.slot_start(later - timedelta(seconds=m.SETTLE_SECONDS)) - timedelta(
            seconds=30)


def _row(start: datetime, received: int, backlog: int | None, latencies: list[float]) -> Measurement:
    return Measurement(seconds=30, started_at=start, received=received, processed=received - 1, written=received // 2,
                       backlog=backlog, write_backlog=None if backlog is None else backlog // 2,
                       ingest_latency=m.histogram_of(latencies), write_latency=m.histogram_of(latencies[:3]))


def _rows(session: Any, seconds: int) -> list[Measurement]:
    return list(session.scalars(select(Measurement).where(Measurement.seconds == seconds)
                                .order_by(Measurement.started_at)))


def test_old_periods_become_hour_rows_that_keep_totals_peaks_and_percentiles(empty: Database) -> None:
    rng = random.Random(3)
    made = []
    with empty.session() as session:
        for i in range(3 * 120):  # three hours of 30-second rows from T0
            latencies = [rng.expovariate(20) for _ in range(rng.randint(1, 30))]
            made.append((i, latencies))
            session.add(_row(T0 + timedelta(seconds=30 * i), 10 + i % 7, None if i % 5 else i, latencies))
    # Rows older than T0 + 1h30m go: only whole hours are merged, so the first hour (and only it).
    with empty.session(write=True) as session:
        assert m.downsample(session, T0 + timedelta(hours=1, minutes=30)) == 120
    with empty.session() as session:
        hours, left = _rows(session, 3600), _rows(session, 30)
    assert len(hours) == 1 and len(left) == 240 and left[0].started_at == T0 + timedelta(hours=1)
    hour = hours[0]
    first = made[:120]
    assert hour.started_at == T0
    assert hour.received == sum(10 + i % 7 for i, _ in first)
    assert hour.processed == hour.received - 120 and hour.written == sum((10 + i % 7) // 2 for i, _ in first)
    assert hour.backlog == 115 and hour.write_backlog == 57  # the peak of the samples taken that hour
    everything = m.histogram_of(v for _, values in first for v in values)
    assert hour.ingest_latency == everything
    for q in (0.5, 0.95):
        assert m.histogram_quantile(hour.ingest_latency, q) == m.histogram_quantile(everything, q)
    assert hour.write_latency == m.histogram_of(v for _, values in first for v in values[:3])
    # Nothing more is due: running again changes nothing.
    with empty.session(write=True) as session:
        assert m.downsample(session, T0 + timedelta(hours=1, minutes=59)) == 0


def test_a_late_row_is_added_to_its_hour_row(empty: Database) -> None:
    with empty.session() as session:
        session.add_all([_row(T0 + timedelta(seconds=30 * i), 10, i, [0.01] * 4) for i in range(60)])
    with empty.session(write=True) as session:
        assert m.downsample(session, T0 + timedelta(hours=50)) == 60
    with empty.session() as session:  # a period of that hour recorded after the merge (beat caught up late)
        session.add(_row(T0 + timedelta(minutes=45), 10, 500, [2.0] * 4))
    with empty.session(write=True) as session:
        assert m.downsample(session, T0 + timedelta(hours=50)) == 1
    with empty.session() as session:
        hours, left = _rows(session, 3600), _rows(session, 30)
    assert left == [] and len(hours) == 1
    assert hours[0].received == 610 and hours[0].backlog == 500
    assert hours[0].ingest_latency == m.histogram_of([0.01] * 240 + [2.0] * 4)


def test_hour_rows_past_their_retention_are_deleted(empty: Database) -> None:
    with empty.session() as session:
        for day in range(5):
            session.add(Measurement(seconds=3600, started_at=T0 - timedelta(days=day), received=1, processed=1,
                                    written=0, ingest_latency=m.empty_histogram(), write_latency=m.empty_histogram()))
        session.add(_row(T0 - timedelta(days=10), 1, None, []))  # a 30-second row: downsampling's, not purge's
    with empty.session(write=True) as session:
        assert m.purge(session, T0 - timedelta(days=2, hours=1)) == 2
    with empty.session() as session:
        kept = [r.started_at for r in _rows(session, 3600)]
        assert kept == [T0 - timedelta(days=d) for d in (2, 1, 0)]
        assert len(_rows(session, 30)) == 1
