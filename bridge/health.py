"""Liveness (/healthz) and readiness (/readyz) probes."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from bridge.extensions import services
from storage.migrate import current_revision, head_revision

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is alive and serving requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Redis and the database answer and the schema is current; 503 naming the failing part otherwise."""
    svc = services()
    checks: dict[str, str] = {}
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means "not ready"; the kind is reported, not raised
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    try:
        svc.db.ping()
        current, head = current_revision(svc.db.engine), head_revision()
        checks["database"] = "ok" if current == head else f"schema at {current}, code needs {head}: run `leadbridge db upgrade`"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if failing:
        log.warning("readyz.failing", extra={"failing": failing})
        return jsonify(status="unavailable", failing=failing, checks=checks), 503
    # The pipeline's state is reported, never answered with 503: a stalled worker must not take the web tier
    # out of a load balancer and turn into refused webhooks (the inbox keeps everything meanwhile).
    pipeline, stalled = _pipeline()
    return jsonify(status="ok", checks=checks, pipeline=pipeline, stalled=stalled)


def _pipeline() -> tuple[dict[str, str], list[str]]:
    from services.pipeline import pipeline_health
    from bridge.metrics import configured_crms

    svc = services()
    try:
        with svc.db.session() as session:
            health = pipeline_health(session, svc.redis, stall_after=svc.settings.stall_after_seconds,
                                     crms=configured_crms(svc.settings))
    except Exception as exc:  # noqa: BLE001 - reported in the body; readiness is about Redis and the database
        return {"pipeline": f"unknown: {type(exc).__name__}"}, []
    return health.summary(), health.stalled
