"""Value: the running (or last) pilot's KPIs per group with 95% intervals, the verdict, weekly charts, exports."""

from __future__ import annotations

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue

from bridge.admin import charts
from bridge.admin.pages import bp, db
from core.records import utcnow
from services import value as ops

GROUP_LINES = {"pilot": ("pilot (scores shown)", "s1"), "control": ("control (scores hidden)", "s4")}
WEEKLY_CHARTS = {"win_rate": ("win rate of the leads closed that week", lambda v: f"{v * 100:.0f}%"),
                 "response_time": ("median minutes from the alert to the first touch", lambda v: f"{v:,.0f}")}


def value_charts(weekly: dict[str, list[ops.WeeklyPoint]]) -> dict[str, object]:
    """One time chart per weekly KPI: a line per group with its 95% interval band; with its key."""
    out: dict[str, object] = {}
    for kpi, (label, unit) in WEEKLY_CHARTS.items():
        points = weekly.get(kpi, [])
        starts = sorted({p.week for p in points})
        lines = []
        for group, (name, css) in GROUP_LINES.items():
            by_week = {p.week: p for p in points if p.group == group}
            series = [ops.finite_interval(by_week.get(week)) for week in starts]
            lines.append(charts.Line(name, [s[0] if s else None for s in series], css,
                                     band=[(s[1], s[2]) if s and s[1] is not None and s[2] is not None else None
                                           for s in series]))
        out[kpi] = charts.time_chart(starts, ops.WEEK, lines, label=label, unit=unit, legend=False)
        out[kpi + "_key"] = charts.key([(line.label, line.css) for line in lines])
    return out


@bp.get("/value")
def value() -> ResponseReturnValue:
    """The pilot against its control group: the sentence, every KPI with its interval, weekly charts."""
    with db() as session:
        view = ops.current_value(session, utcnow())
    return render_template("admin/value.html", view=view, value_charts=value_charts(view.weekly) if view else {})


@bp.get("/value/export")
def value_export() -> ResponseReturnValue:
    """The KPIs as CSV (default) or JSON, for finance."""
    fmt = request.args.get("format", "csv")
    with db() as session:
        body, mimetype, name = ops.export(session, utcnow(), fmt)
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})
