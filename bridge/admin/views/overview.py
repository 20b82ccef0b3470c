"""The overview page."""

from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue

from bridge.admin.pages import bp, db
from services.overview import build_overview
from bridge.extensions import services
from bridge.metrics import configured_crms
from tasks.config import QUEUES


@bp.get("/")
def overview() -> ResponseReturnValue:
    """Events per minute, latency percentiles, backlog, CRM API budget and failing parts."""
    svc = services()
    with db() as session:
        view = build_overview(session, svc.redis, svc.celery, QUEUES, stall_after=svc.settings.stall_after_seconds,
                              crms=configured_crms(svc.settings))
    peak = max([count for _, count in view.events_per_minute] or [0])
    return render_template("admin/overview.html", view=view, peak=max(peak, 1))
