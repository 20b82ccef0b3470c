"""The overview page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue

from bridge.admin import charts
from bridge.admin.pages import bp, db
from bridge.extensions import services
from bridge.metrics import configured_crms
from services import overview as ops
from tasks.config import QUEUES


@bp.get("/")
def overview() -> ResponseReturnValue:
    """Charts of the stored measurements and the scored leads, latency percentiles, backlog, CRM budget, health."""
    chart_range = ops.check_range(request.args.get("range"))
    svc = services()
    with db() as session:
        view = ops.build_overview(session, svc.redis, svc.celery, QUEUES, stall_after=svc.settings.stall_after_seconds,
                              crms=configured_crms(svc.settings))
        series = ops.measurement_series(session, chart_range)
        mix = ops.lead_mix(session)
    return render_template("admin/overview.html", view=view, series=series, mix=mix, ranges=list(ops.RANGES),
                           charts=overview_charts(series, mix))


def overview_charts(series: ops.Series, mix: ops.LeadMix) -> dict[str, Any]:
    """The overview's SVG charts, drawn from the series of the chosen range and the scored leads."""
    starts = [b.start for b in series.bins]
    bar = timedelta(seconds=series.bin_seconds)
    per_second = float(series.bin_seconds)

    def rate(values: list[int | None]) -> list[float | None]:
        return [None if v is None else v / per_second for v in values]

    def recorded(name: str) -> list[int | None]:
        return [getattr(b, name) if b.recorded else None for b in series.bins]

    def latency(leg: str, q: str) -> list[float | None]:
        return [getattr(getattr(b, leg), q) if b.recorded else None for b in series.bins]

    share_today = _shares(mix.grades_today, mix.grades)
    share_week = _shares(mix.grades_week_ago, mix.grades)
    return {
        "events": charts.time_chart(starts, bar, [
            charts.Line("received", rate(recorded("received")), "s1"),
            charts.Line("processed", rate(recorded("processed")), "s2"),
            charts.Line("CRM writes", rate(recorded("written")), "s3"),
        ], label=f"events per second over the last {series.range}", unit=lambda v: f"{charts.number(v)}/s"),
        "backlog": charts.time_chart(starts, bar, [
            charts.Line("events waiting", recorded("backlog"), "s1"),
            charts.Line("leads to write", recorded("write_backlog"), "s3"),
        ], label=f"backlog over the last {series.range}"),
        "latency": charts.time_chart(starts, bar, [
            charts.Line("processed p50", latency("ingest_latency", "p50"), "s1"),
            charts.Line("p95", latency("ingest_latency", "p95"), "s1 dashed"),
            charts.Line("CRM ack p50", latency("write_latency", "p50"), "s3"),
            charts.Line("p95", latency("write_latency", "p95"), "s3 dashed"),
        ], label=f"latency over the last {series.range}", unit=charts.duration),
        "scores": charts.bar_chart([band for band, _ in mix.score_bands],
                                   [charts.Bars("leads", [count for _, count in mix.score_bands], "s1")],
                                   label="how many leads have each score"),
        "grades": charts.bar_chart(mix.grades, [charts.Bars("last 24 h", share_today, "s1"),
                                                charts.Bars("a week before", share_week, "s4")],
                                   label="share of the leads scored with each grade",
                                   unit=lambda v: f"{v:.0f}%"),
        "reason_bar": charts.share_bar,
    }


def _shares(counts: dict[str, int], grades: list[str]) -> list[float]:
    total = sum(counts.values())
    return [100.0 * counts.get(grade, 0) / total if total else 0.0 for grade in grades]
