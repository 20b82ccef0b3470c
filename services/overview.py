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

from services.pipeline import pipeline_health
from core.keys import HEARTBEAT_KEY, RATELIMIT_PREFIX
from core.records import utcnow
from storage.models import InboxEvent, OutboxItem, ScoreHistory

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
