"""Measurements: the pipeline's figures per 30 s, merged into hour rows later; what the overview's charts draw.

A 30-second row is computed from the tables themselves once its period has settled: inbox rows received
(received_at) and processed (processed_at) in it, CRM records written by the outbox batches the CRM
acknowledged in it (sent_at, payload "written" and "latency_ms"). The backlogs are samples taken when the row
is recorded. Latencies are counts per fixed bucket (LATENCY_BOUNDS), so rows merge by adding their counts and
percentiles are estimated from any merged histogram, as PromQL does from Prometheus buckets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.models import InboxEvent, Measurement, OutboxItem

SLOT_SECONDS = 30
HOUR_SECONDS = 3600
# Upper bounds (seconds) of the latency buckets; one more bucket counts everything beyond the last bound.
LATENCY_BOUNDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                                     300.0, 1800.0)
# Every inbox status: received rows are counted through the (status, received_at) index, one range per status,
# so the count reads only the period's index entries (there is no index on received_at alone).
INBOX_STATUSES = ("pending", "done", "ignored", "failed", "dead", "discarded")
SETTLE_SECONDS = 15  # a period is measured this long after it ends, once its rows are committed
CATCH_UP_SLOTS = 60  # periods missed (beat or the worker down) are measured for up to 30 minutes back
OUTBOX_SLACK = timedelta(minutes=10)  # a batch row is stored just after the CRM's answer: search this far around
DOWNSAMPLE_HOURS = 48  # hours of 30-second rows merged per run (a long outage is caught up over several runs)


def empty_histogram() -> list[int]:
    """A latency histogram with nothing in it."""
    return [0] * (len(LATENCY_BOUNDS) + 1)


def bucket_of(seconds: float) -> int:
    """The index of the bucket `seconds` falls in (a bound belongs to its own bucket, as Prometheus' `le`)."""
    for index, bound in enumerate(LATENCY_BOUNDS):
        if seconds <= bound:
            return index
    return len(LATENCY_BOUNDS)


def histogram_of(samples: Iterable[float]) -> list[int]:
    """Counts per bucket of `samples` (seconds; negative clock skew counts as 0)."""
    counts = empty_histogram()
    for value in samples:
        counts[bucket_of(max(0.0, value))] += 1
    return counts


def merge_histograms(histograms: Iterable[Sequence[int] | None]) -> list[int]:
    """The sum of histograms (None or empty ones count as nothing); they must share LATENCY_BOUNDS."""
    total = empty_histogram()
    for counts in histograms:
        if not counts:
            continue
        if len(counts) != len(total):
            raise ValueError(f"a histogram of {len(counts)} buckets cannot be merged into {len(total)}")
        for index, count in enumerate(counts):
            total[index] += int(count)
    return total


def histogram_quantile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) estimated from counts per bucket, interpolating inside a bucket; None when empty.

    Beyond the last bound only that bound is known, so it is the answer (as PromQL's histogram_quantile).
    """
    total = sum(counts)
    if total <= 0:
        return None
    target = q * total
    seen = 0.0
    lower = 0.0
    for index, count in enumerate(counts):
        if index == len(LATENCY_BOUNDS):
            return LATENCY_BOUNDS[-1]
        upper = LATENCY_BOUNDS[index]
        if count and seen + count >= target:
            return lower + (upper - lower) * max(0.0, target - seen) / count
        seen += count
        lower = upper
    return LATENCY_BOUNDS[-1]


def slot_start(moment: datetime, seconds: int = SLOT_SECONDS) -> datetime:
    """The start of the period of `seconds` (aligned to the epoch) that contains `moment`."""
    stamp = moment.timestamp()
    return datetime.fromtimestamp(stamp - stamp % seconds, UTC)


@dataclass(frozen=True)
class Figures:
    """What happened in one period, read from the tables."""

    received: int
    processed: int
    written: int
    ingest_latency: list[int]
    write_latency: list[int]


def period_figures(session: Session, start: datetime, end: datetime) -> Figures:
    """Events received and processed, CRM records written and both latencies in [start, end), from the tables."""
    received = session.scalar(select(func.count()).select_from(InboxEvent).where(
        InboxEvent.status.in_(INBOX_STATUSES), InboxEvent.received_at >= start, InboxEvent.received_at < end))
    waits = session.execute(select(InboxEvent.received_at, InboxEvent.processed_at).where(
        InboxEvent.processed_at >= start, InboxEvent.processed_at < end)).all()
    written = 0
    acks: list[float] = []
    for payload in session.scalars(select(OutboxItem.payload).where(
            OutboxItem.status.in_(("sent", "partial")),
            OutboxItem.created_at >= start - OUTBOX_SLACK, OutboxItem.created_at < end + OUTBOX_SLACK,
            OutboxItem.sent_at >= start, OutboxItem.sent_at < end,
            OutboxItem.kind == "fields", OutboxItem.object_type == "batch")):
        payload = payload or {}
        written += int(payload.get("written") or 0)
        acks.extend(float(ms) / 1000 for ms in payload.get("latency_ms") or ())
    return Figures(
        received=int(received or 0), processed=len(waits), written=written,
        ingest_latency=histogram_of((done - got).total_seconds() for got, done in waits),
        write_latency=histogram_of(acks),
    )


def latest_slot(session: Session) -> datetime | None:
    """The start of the newest 30-second row recorded, if any."""
    return session.scalar(select(func.max(Measurement.started_at)).where(Measurement.seconds == SLOT_SECONDS))


def due_slots(last: datetime | None, now: datetime) -> list[datetime]:
    """Starts of the 30-second periods to measure now: settled, not recorded, at most CATCH_UP_SLOTS back."""
    newest = slot_start(now - timedelta(seconds=SETTLE_SECONDS)) - timedelta(seconds=SLOT_SECONDS)
    oldest = newest - timedelta(seconds=SLOT_SECONDS * (CATCH_UP_SLOTS - 1))
    if last is not None:
        oldest = max(oldest, last + timedelta(seconds=SLOT_SECONDS))
    slots = []
    while oldest <= newest:
        slots.append(oldest)
        oldest += timedelta(seconds=SLOT_SECONDS)
    return slots


def record_slots(session: Session, now: datetime, *, backlog: int | None, write_backlog: int | None) -> int:
    """Record every due 30-second period; the backlog samples go with the newest. Returns the rows written.

    Two runs at once (a delayed beat message) write each period once: the second insert is skipped.
    """
    return insert_slots(session, slot_rows(session, now, backlog=backlog, write_backlog=write_backlog))


def slot_rows(session: Session, now: datetime, *, backlog: int | None, write_backlog: int | None
              ) -> list[dict[str, Any]]:
    """The rows of every due 30-second period (reads only: the task runs it outside SQLite's writer lock, since
    reading a busy period's inbox rows takes long enough to hold up every webhook and ingest commit)."""
    slots = due_slots(latest_slot(session), now)
    rows = []
    for start in slots:
        figures = period_figures(session, start, start + timedelta(seconds=SLOT_SECONDS))
        newest = start == slots[-1]
        rows.append({"seconds": SLOT_SECONDS, "started_at": start, "received": figures.received,
                     "processed": figures.processed, "written": figures.written,
                     "backlog": backlog if newest else None, "write_backlog": write_backlog if newest else None,
                     "ingest_latency": figures.ingest_latency, "write_latency": figures.write_latency})
    return rows


def insert_slots(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert measured periods, skipping any recorded meanwhile; returns the rows written."""
    if not rows:
        return 0
    # Counted through RETURNING: psycopg reports no rowcount (-1) for an INSERT .. ON CONFLICT DO NOTHING.
    return len(session.execute(_insert_new(session).values(list(rows)).returning(Measurement.id)).all())


def _insert_new(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(Measurement).on_conflict_do_nothing(index_elements=["seconds", "started_at"])


def _peak(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def merge_rows(rows: Sequence[Measurement]) -> dict[str, Any]:
    """The figures of several rows as one: counts and histograms added, backlogs at their peak."""
    return {
        "received": sum(r.received for r in rows), "processed": sum(r.processed for r in rows),
        "written": sum(r.written for r in rows),
        "backlog": _peak(r.backlog for r in rows), "write_backlog": _peak(r.write_backlog for r in rows),
        "ingest_latency": merge_histograms(r.ingest_latency for r in rows),
        "write_latency": merge_histograms(r.write_latency for r in rows),
    }


def downsample(session: Session, before: datetime, hours: int = DOWNSAMPLE_HOURS) -> int:
    """Merge the 30-second rows of whole hours that end by `before` into hour rows; returns the rows merged.

    An hour already merged in part (an hour row exists) gets the rest added. The rows are locked while merged,
    so two runs at once cannot count a row twice.
    """
    cutoff = slot_start(before, HOUR_SECONDS)
    first = session.scalar(select(func.min(Measurement.started_at)).where(
        Measurement.seconds == SLOT_SECONDS, Measurement.started_at < cutoff))
    if first is None:
        return 0
    cutoff = min(cutoff, slot_start(first, HOUR_SECONDS) + timedelta(hours=hours))
    rows = list(session.scalars(select(Measurement).where(
        Measurement.seconds == SLOT_SECONDS, Measurement.started_at < cutoff)
        .order_by(Measurement.started_at).with_for_update()))
    by_hour: dict[datetime, list[Measurement]] = {}
    for row in rows:
        by_hour.setdefault(slot_start(row.started_at, HOUR_SECONDS), []).append(row)
    for hour, members in by_hour.items():
        existing = session.scalars(select(Measurement).where(
            Measurement.seconds == HOUR_SECONDS, Measurement.started_at == hour).with_for_update()).first()
        merged = merge_rows([existing, *members] if existing is not None else members)
        if existing is None:
            session.add(Measurement(seconds=HOUR_SECONDS, started_at=hour, **merged))
        else:
            for name, value in merged.items():
                setattr(existing, name, value)
    session.execute(delete(Measurement).where(Measurement.id.in_([r.id for r in rows])))
    return len(rows)


def purge(session: Session, before: datetime) -> int:
    """Delete hour rows that started before `before` (the retention of the downsampled history)."""
    result = session.execute(delete(Measurement).where(Measurement.seconds == HOUR_SECONDS,
                                                       Measurement.started_at < before))
    return int(result.rowcount or 0)


def rows_between(session: Session, start: datetime, end: datetime) -> list[Measurement]:
    """Every row (30 s or hour) that started in [start, end), oldest first."""
    return list(session.scalars(select(Measurement).where(
        Measurement.seconds.in_((SLOT_SECONDS, HOUR_SECONDS)), Measurement.started_at >= start,
        Measurement.started_at < end).order_by(Measurement.started_at, Measurement.seconds)))


def period_end(session: Session) -> datetime | None:
    """The end of the newest period recorded (30-second or hour row), if any."""
    newest = session.execute(select(Measurement.started_at, Measurement.seconds)
                             .order_by(Measurement.started_at.desc()).limit(1)).first()
    if newest is None:
        return None
    return newest[0] + timedelta(seconds=newest[1])

