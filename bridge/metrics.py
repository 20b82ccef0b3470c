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


def record_rejection(kind: str, source: str, reason: str) -> None:
    """Count one refused delivery by reason."""
    DELIVERIES.labels(kind, source, reason).inc()


class BacklogCollector(Collector):
    """Reads the inbox backlog from the database at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("leadbridge_inbox_backlog", "Inbox events waiting to be processed")
        try:
            with services().db.session() as session:
                gauge.add_metric([], backlog(session))
        except Exception:  # the database being down is reported by /readyz; a scrape still succeeds
            return
        yield gauge


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus exposition of every web process's metrics plus the inbox backlog."""
    registry = CollectorRegistry()
    registry.register(BacklogCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(payload, content_type=CONTENT_TYPE_LATEST)
