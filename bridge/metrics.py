"""Prometheus metrics for the web process, served at /metrics (multi-process aware under gunicorn)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge.extensions import services
from storage.inbox import backlog

bp = Blueprint("metrics", __name__)

DELIVERIES = Counter(
    "leadbridge_webhook_deliveries_total", "Webhook requests by kind, source and outcome", ["kind", "source", "outcome"]
)
EVENTS = Counter(
    "leadbridge_webhook_events_total", "Webhook events by kind, source and outcome", ["kind", "source", "outcome"]
)
VALUES_DROPPED = Counter(
    "leadbridge_webhook_values_dropped_total",
    "Values left out of accepted events at the validation boundary (core.values), by kind, source and reason",
    ["kind", "source", "reason"],
)
ACK_SECONDS = Histogram(
    "leadbridge_webhook_ack_seconds",
    "Time from request start to acknowledgement",
    ["kind"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def record_delivery(kind: str, source: str, outcome: str, summary: dict[str, Any]) -> None:
    """Count one acknowledged delivery and its events by outcome."""
    DELIVERIES.labels(kind, source, outcome).inc()
    for name in ("accepted", "duplicates"):
        if summary.get(name):
            EVENTS.labels(kind, source, name).inc(summary[name])
    for name in ("invalid", "ignored"):
        if summary.get(name):
            EVENTS.labels(kind, source, name).inc(len(summary[name]))
    for item in summary.get("dropped") or ():
        VALUES_DROPPED.labels(kind, source, item["reason"]).inc()


def record_rejection(kind: str, source: str, reason: str) -> None:
    """Count one refused delivery by reason."""
    DELIVERIES.labels(kind, source, reason).inc()


class BacklogCollector(Collector):
    """Reads the inbox backlog from the database at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("leadbridge_inbox_backlog", "Inbox events waiting to be processed")
        try:
            with services().db.session() as session:
                gauge.add_metric([], backlog(session, cap=None))  # exact: a scrape every 15-30 s can afford it
        except Exception:  # the database being down is reported by /readyz; a scrape still succeeds
            return
        yield gauge


class PipelineCollector(Collector):
    """Stall detection and dead letters (services.pipeline), read at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from services.pipeline import pipeline_health

        svc = services()
        try:
            with svc.db.session() as session:
                health = pipeline_health(session, svc.redis, stall_after=svc.settings.stall_after_seconds,
                                         crms=configured_crms(svc.settings))
        except Exception:  # noqa: BLE001 - the database or Redis being down is reported by /readyz
            return
        oldest = GaugeMetricFamily("leadbridge_inbox_oldest_pending_seconds",
                                   "Age of the oldest inbox row waiting to be processed (0 when none)")
        oldest.add_metric([], health.oldest_pending_seconds or 0.0)
        stalled = GaugeMetricFamily("leadbridge_pipeline_stalled", "1 when a part has old work and no progress",
                                    labels=["part"])
        for name, part in health.parts.items():
            if name != "dead letters":
                stalled.add_metric([name], 1.0 if part.state == "stalled" else 0.0)
        processed = GaugeMetricFamily("leadbridge_pipeline_processed_last_minute",
                                      "Items each stage finished in the last 60 s", labels=["stage"])
        for stage, count in health.processed.items():
            processed.add_metric([stage], count)
        dead = GaugeMetricFamily("leadbridge_dead_letters", "Open dead letters by stage", labels=["stage"])
        for stage, count in health.dead_letters.items():
            dead.add_metric([stage], count)
        yield from (oldest, stalled, processed, dead)


def configured_crms(settings: Any) -> tuple[str, ...]:
    """The CRMs leadbridge writes to (in sandbox mode `run` gives its children the sandbox's HubSpot token)."""
    crms = []
    if settings.hubspot_access_token is not None:
        crms.append("hubspot")
    if settings.salesforce_username or settings.salesforce_session_id:
        crms.append("salesforce")
    return tuple(crms)


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus exposition of every web process's metrics plus the inbox backlog."""
    registry = CollectorRegistry()
    registry.register(BacklogCollector())
    registry.register(PipelineCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(payload, content_type=CONTENT_TYPE_LATEST)
