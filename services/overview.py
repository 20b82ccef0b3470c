"""The overview: events per minute, latency percentiles, backlog, CRM API budget and failing parts.

Every number is read from where it really lives: the inbox/outbox/score history tables, the Celery
queues on the broker, the web processes' Prometheus histograms, the shared rate-limit buckets and the
beat heartbeat in Redis.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis as redis_lib
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.keys import HEARTBEAT_KEY, RATELIMIT_PREFIX
from core.records import utcnow
from services import OperationError
from services.pipeline import pipeline_health
from storage import measurements
from storage.models import InboxEvent, Lead, OutboxItem, ScoreHistory

HEARTBEAT_STALE = 120  # seconds
LATENCY_SAMPLE = 5000


@dataclass(frozen=True)
class Percentiles:
    """p50/p95/p99 in seconds over `count` samples (None when there were none)."""

    count: int
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass
class Overview:
    """What the overview page and /api/overview show."""

    generated_at: datetime
    events_per_minute: list[tuple[str, int]] = field(default_factory=list)  # (HH:MM UTC, count), last 60 min
    events_last_minute: int = 0
    latency: dict[str, Percentiles] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    queues: dict[str, int | None] = field(default_factory=dict)
    crm_budget: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)  # part -> "ok" or what is wrong

    @property
    def failing(self) -> list[str]:
        """Parts whose check is not "ok"."""
        return sorted(name for name, state in self.checks.items() if state != "ok")


def percentiles(samples: list[float]) -> Percentiles:
    """Nearest-rank percentiles of `samples`."""
    if not samples:
        return Percentiles(0)
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return Percentiles(len(ordered), rank(0.50), rank(0.95), rank(0.99))


def _minute_bucket(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%H:%M", column)
    return func.to_char(func.date_trunc("minute", column), "HH24:MI")


def events_per_minute(session: Session, now: datetime) -> list[tuple[str, int]]:
    """Inbox events received in each of the last 60 minutes (UTC), oldest first, zeros included."""
    start = (now - timedelta(minutes=59)).replace(second=0, microsecond=0)
    bucket = _minute_bucket(session, InboxEvent.received_at).label("minute")
    counts = {m: int(c) for m, c in session.execute(
        select(bucket, func.count()).where(InboxEvent.received_at >= start).group_by(bucket))}
    return [((start + timedelta(minutes=i)).strftime("%H:%M"),
             counts.get((start + timedelta(minutes=i)).strftime("%H:%M"), 0)) for i in range(60)]


def _durations(session: Session, end: Any, begin: Any, since: datetime, *where: Any) -> list[float]:
    rows = session.execute(select(begin, end).where(end.is_not(None), end >= since, *where)
                           .order_by(end.desc()).limit(LATENCY_SAMPLE))
    return [max(0.0, (stop - start).total_seconds()) for start, stop in rows if start is not None]


def writeback_latency(session: Session, since: datetime) -> Percentiles:
    """Seconds from a score's creation to the CRM's acknowledgement of its write, per record written since `since`.

    Read from the writeback's batch rows (tasks.writeback records each written record's latency), newest
    first, up to LATENCY_SAMPLE records.
    """
    rows = session.scalars(
        select(OutboxItem.payload)
        .where(OutboxItem.status.in_(("sent", "partial")), OutboxItem.created_at >= since,
               OutboxItem.kind == "fields", OutboxItem.object_type == "batch")
        .order_by(OutboxItem.created_at.desc()).limit(LATENCY_SAMPLE))
    samples: list[float] = []
    for payload in rows:
        samples.extend(float(ms) / 1000 for ms in (payload or {}).get("latency_ms") or ())
        if len(samples) >= LATENCY_SAMPLE:
            break
    return percentiles(samples)


def ack_latency() -> Percentiles:
    """Webhook acknowledgement latency from the web processes' Prometheus histogram (all processes)."""
    from prometheus_client import REGISTRY, CollectorRegistry

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    buckets: dict[float, float] = {}
    for metric in registry.collect():
        if metric.name != "leadbridge_webhook_ack_seconds":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                upper = float(sample.labels["le"])
                buckets[upper] = buckets.get(upper, 0.0) + sample.value
    return histogram_percentiles(buckets)


def histogram_percentiles(buckets: dict[float, float]) -> Percentiles:
    """Percentiles estimated from cumulative histogram buckets, interpolating inside a bucket (as PromQL does)."""
    if not buckets:
        return Percentiles(0)
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return Percentiles(0)

    def quantile(q: float) -> float:
        target = q * total
        lower_bound, lower_count = 0.0, 0.0
        for upper in bounds:
            count = buckets[upper]
            if count >= target:
                if math.isinf(upper):
                    return lower_bound  # beyond the last finite bucket: its bound is all we know
                share = (target - lower_count) / (count - lower_count) if count > lower_count else 1.0
                return lower_bound + (upper - lower_bound) * share
            lower_bound, lower_count = upper, count
        return lower_bound

    return Percentiles(int(total), quantile(0.50), quantile(0.95), quantile(0.99))


def queue_lengths(celery: Celery, names: tuple[str, ...]) -> dict[str, int | None]:
    """Messages waiting in each Celery queue (None when the broker cannot be asked)."""
    out: dict[str, int | None] = {}
    try:
        with celery.connection_for_read() as connection:
            channel = connection.default_channel
            for name in names:
                try:
                    out[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
                except Exception:  # noqa: BLE001 - a queue never declared yet holds nothing
                    out[name] = 0
    except Exception:  # noqa: BLE001 - an unreachable broker is reported as unknown lengths
        return {name: None for name in names}
    return out


def crm_budget(redis: redis_lib.Redis, session: Session, now: datetime) -> list[dict[str, Any]]:
    """Rate-limit bucket levels shared by the workers, and CRM calls made through the outbox in 24 hours."""
    rows: list[dict[str, Any]] = []
    for key in sorted(redis.scan_iter(match=RATELIMIT_PREFIX + "*", count=100))[:20]:
        tokens = redis.hget(key, "tokens")
        name = key.decode() if isinstance(key, bytes) else str(key)
        rows.append({"bucket": name.removeprefix(RATELIMIT_PREFIX),
                     "tokens_left": round(float(tokens), 1) if tokens is not None else None})
    since = now - timedelta(hours=24)
    for target, attempts, sent in session.execute(
        select(OutboxItem.target, func.coalesce(func.sum(OutboxItem.attempts), 0),
               func.count().filter(OutboxItem.status == "sent"))
        .where(OutboxItem.updated_at >= since).group_by(OutboxItem.target)
    ):
        rows.append({"bucket": f"{target} writes (24 h)", "attempts": int(attempts), "sent": int(sent)})
    return rows


def drift_state(session: Session) -> str:
    """"ok", or which features of the serving model drifted at its latest drift check."""
    from storage.model_registry import champion

    try:
        serving = champion(session, "lead")
    except Exception as exc:  # noqa: BLE001 - the database check names a broken database; say so here too
        return f"unknown: {type(exc).__name__}"
    report = (serving.metrics or {}).get("drift_report") if serving is not None else None
    if serving is not None and isinstance(report, dict) and report.get("alert"):
        drifted = ", ".join(str(d) for d in (report.get("drifted") or [])[:5])
        return f"{serving.version}: drift in {drifted} (see Model)"
    return "ok"


def build_overview(session: Session, redis: redis_lib.Redis, celery: Celery, queues: tuple[str, ...],
                   now: datetime | None = None, *, stall_after: float = 120.0,
                   crms: tuple[str, ...] = ("hubspot", "salesforce")) -> Overview:
    """Collect every overview figure; a part that cannot be read is reported as failing, not raised."""
    moment = now or utcnow()
    view = Overview(generated_at=moment)
    try:
        view.events_per_minute = events_per_minute(session, moment)
        view.events_last_minute = view.events_per_minute[-1][1] if view.events_per_minute else 0
        hour = moment - timedelta(hours=1)
        view.latency = {
            "webhook_ack": ack_latency(),
            "ingest": percentiles(_durations(session, InboxEvent.processed_at, InboxEvent.received_at, hour)),
            "event_to_score": percentiles(_durations(session, ScoreHistory.created_at, ScoreHistory.feature_time, hour,
                                                     ScoreHistory.trigger == "event")),
            "writeback": writeback_latency(session, hour),
        }
        inbox = {s: int(c) for s, c in session.execute(select(InboxEvent.status, func.count())
                                                       .group_by(InboxEvent.status))}
        outbox = {s: int(c) for s, c in session.execute(select(OutboxItem.status, func.count())
                                                        .group_by(OutboxItem.status))}
        view.backlog = {"inbox_pending": inbox.get("pending", 0), "inbox_failed": inbox.get("failed", 0),
                        "outbox_pending": outbox.get("pending", 0), "outbox_failed": outbox.get("failed", 0),
                        "dead_letter": outbox.get("dead", 0)}
        view.checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a failing part is reported, not raised
        view.checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        redis.ping()
        view.checks["redis"] = "ok"
        beat = redis.get(HEARTBEAT_KEY)
        age = time.time() - float(beat) if beat is not None else None
        view.checks["workers and beat"] = ("ok" if age is not None and age < HEARTBEAT_STALE else
                                           "no heartbeat in the last 2 minutes: is `leadbridge worker` and "
                                           "`leadbridge beat` (or `leadbridge run`) running?")
        view.crm_budget = crm_budget(redis, session, moment)
    except Exception as exc:  # noqa: BLE001 - a failing part is reported, not raised
        view.checks["redis"] = f"unavailable: {type(exc).__name__}"
    view.queues = queue_lengths(celery, queues)
    view.checks["broker"] = "ok" if all(v is not None for v in view.queues.values()) else "unreachable"
    try:
        # Stalls and dead letters, the same report /readyz, /metrics and `leadbridge doctor` give.
        health = pipeline_health(session, redis, stall_after=stall_after, crms=crms,
                                 score_queue_length=view.queues.get("score"), now=moment)
        view.backlog["dead_letters"] = sum(health.dead_letters.values())
        view.backlog["oldest_pending_seconds"] = round(health.oldest_pending_seconds or 0.0)
        view.checks.update(health.summary())
    except Exception as exc:  # noqa: BLE001 - a failing part is reported, not raised
        view.checks["pipeline"] = f"unknown: {type(exc).__name__}"
    view.checks["model drift"] = drift_state(session)
    return view


# --- charts: the stored measurements over a range, and the scored leads --------------------------------

RANGES: dict[str, tuple[timedelta, int]] = {  # range -> (length, seconds per bar)
    "hour": (timedelta(hours=1), 30),
    "day": (timedelta(days=1), 600),
    "week": (timedelta(days=7), 3600),
}


@dataclass(frozen=True)
class SeriesBin:
    """One bar of the time charts: what the measurements starting in [start, start + seconds) add up to."""

    start: datetime
    received: int = 0
    processed: int = 0
    written: int = 0
    backlog: int | None = None  # the largest sample
    write_backlog: int | None = None
    ingest_latency: Percentiles = Percentiles(0)  # webhook received -> processed
    write_latency: Percentiles = Percentiles(0)  # score created -> CRM acknowledged
    recorded: bool = False  # False: no measurement in this bar (beat was not running)


@dataclass(frozen=True)
class Series:
    """The measurements of one range, in bars, with the totals of the whole window [start, end)."""

    range: str
    start: datetime
    end: datetime
    bin_seconds: int
    bins: list[SeriesBin]
    received: int
    processed: int
    written: int
    backlog_peak: int | None
    backlog_last: int | None
    write_backlog_peak: int | None
    ingest_latency: Percentiles
    write_latency: Percentiles
    measurements: int  # stored measurements (30-second or hour rows) in the window


def _histogram_percentiles(counts: list[int]) -> Percentiles:
    quantile = measurements.histogram_quantile
    return Percentiles(sum(counts), quantile(counts, 0.50), quantile(counts, 0.95), quantile(counts, 0.99))


def check_range(name: str | None) -> str:
    """The chart range asked for (hour when not given); anything else is an OperationError naming the choices."""
    value = (name or "hour").strip().lower()
    if value not in RANGES:
        raise OperationError(f"range must be one of {', '.join(RANGES)}")
    return value


def measurement_series(session: Session, range_name: str = "hour", now: datetime | None = None) -> Series:
    """The range's measurements in bars, ending with the newest period recorded (or now, before the first)."""
    m = measurements
    name = check_range(range_name)
    length, width = RANGES[name]
    end = m.period_end(session) or m.slot_start(now or utcnow())
    start = end - length
    rows = m.rows_between(session, start, end)
    grouped: dict[int, list[Any]] = {}
    for row in rows:
        grouped.setdefault(int((row.started_at - start).total_seconds()) // width, []).append(row)
    bins = []
    for index in range(int(length.total_seconds()) // width):
        members = grouped.get(index)
        at = start + timedelta(seconds=index * width)
        if not members:
            bins.append(SeriesBin(at))
            continue
        merged = m.merge_rows(members)
        bins.append(SeriesBin(at, merged["received"], merged["processed"], merged["written"], merged["backlog"],
                              merged["write_backlog"], _histogram_percentiles(merged["ingest_latency"]),
                              _histogram_percentiles(merged["write_latency"]), True))
    total = m.merge_rows(rows)
    sampled = [row.backlog for row in rows if row.backlog is not None]
    return Series(
        range=name, start=start, end=end, bin_seconds=width, bins=bins, received=total["received"],
        processed=total["processed"], written=total["written"], backlog_peak=total["backlog"],
        backlog_last=sampled[-1] if sampled else None, write_backlog_peak=total["write_backlog"],
        ingest_latency=_histogram_percentiles(total["ingest_latency"]),
        write_latency=_histogram_percentiles(total["write_latency"]), measurements=len(rows),
    )


GRADE_ORDER = ("A", "B", "C", "D", "E", "F")
SCORE_BANDS = 10  # 0-9, 10-19, ..., 90-100
REASON_LEADS = 5000  # top reasons are counted over this many of the most recently scored leads
TOP_REASONS = 10


@dataclass(frozen=True)
class LeadMix:
    """The scored leads: their score distribution, grade mix in the last day vs a week before, top reasons."""

    generated_at: datetime
    scored: int  # leads with a score
    score_bands: list[tuple[str, int]]  # ("0-9", leads), ..., ("90-100", leads)
    day_start: datetime  # "today": leads scored in [day_start, generated_at)
    grades_today: dict[str, int]  # grade ("none": no grade) -> leads
    week_ago_start: datetime  # "a week ago": leads scored in [week_ago_start, week_ago_end), from score history
    week_ago_end: datetime
    grades_week_ago: dict[str, int]
    reasons: list[tuple[str, int]]  # the most common reasons, with how many leads show each
    reason_leads: int  # leads whose reasons were counted

    @property
    def grades(self) -> list[str]:
        """Every grade either day shows, A first, "none" last."""
        seen = set(self.grades_today) | set(self.grades_week_ago)
        known = [g for g in GRADE_ORDER if g in seen]
        return known + sorted(seen - set(known) - {"none"}) + (["none"] if "none" in seen else [])


def _grade_counts(pairs: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for grade, count in pairs:
        key = grade or "none"
        out[key] = out.get(key, 0) + int(count)
    return out


def lead_mix(session: Session, now: datetime | None = None) -> LeadMix:
    """Score distribution of every scored lead, grade mix of the last 24 h vs the same 24 h a week earlier, and
    the reasons the most recently scored leads show most often."""
    moment = now or utcnow()
    smaller = func.min if session.get_bind().dialect.name == "sqlite" else func.least  # of two values
    band = smaller(Lead.score // 10, SCORE_BANDS - 1)
    per_band = {int(b): int(c) for b, c in session.execute(
        select(band.label("band"), func.count()).where(Lead.score.is_not(None)).group_by("band"))}
    bands = [(f"{10 * i}-{10 * i + 9 if i < SCORE_BANDS - 1 else 100}", per_band.get(i, 0)) for i in range(SCORE_BANDS)]
    day_start = moment - timedelta(days=1)
    today = _grade_counts(session.execute(
        select(Lead.grade, func.count()).where(Lead.score.is_not(None), Lead.scored_at >= day_start,
                                               Lead.scored_at < moment).group_by(Lead.grade)))
    week_end = moment - timedelta(days=7)
    week_start = week_end - timedelta(days=1)
    # Each lead's last score of that day, read from the history (the leads table holds only the current one).
    last = (select(func.max(ScoreHistory.id).label("id"))
            .where(ScoreHistory.created_at >= week_start, ScoreHistory.created_at < week_end)
            .group_by(ScoreHistory.lead_id).subquery())
    week_ago = _grade_counts(session.execute(
        select(ScoreHistory.grade, func.count()).join(last, last.c.id == ScoreHistory.id).group_by(ScoreHistory.grade)))
    counted = 0
    reasons: dict[str, int] = {}
    for row in session.scalars(select(Lead.reasons).where(Lead.score.is_not(None))
                               .order_by(Lead.scored_at.desc(), Lead.id.desc()).limit(REASON_LEADS)):
        counted += 1
        for reason in {str(r) for r in row or ()}:
            reasons[reason] = reasons.get(reason, 0) + 1
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
    return LeadMix(generated_at=moment, scored=sum(per_band.values()), score_bands=bands, day_start=day_start,
                   grades_today=today, week_ago_start=week_start, week_ago_end=week_end, grades_week_ago=week_ago,
                   reasons=top, reason_leads=counted)
