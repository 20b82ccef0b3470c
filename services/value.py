"""The pilot's value (issue 17) for the admin's Value page, the API, the CLI, the weekly Slack summary and exports.

The numbers come from scoring.value over facts the database holds (groups, threshold crossings, the CRM's
touches, stages, opportunities and outcomes); this module shapes them for people and for finance.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from scoring.experiment import excludes_zero
from scoring.value import (
    Kpi,
    KpiText,
    LeadFacts,
    Plan,
    ValueReport,
    WeeklyPoint,
    kpi_text,
    value_report,
    weekly,
)
from services import OperationError
from services.pilots import pilot_view
from storage.pilots import latest_pilot, open_pilot
from tasks.value import stored_facts

WEEK = timedelta(days=7)
WEEKLY_KPIS = ("win_rate", "response_time")

def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class KpiRow:
    """One KPI as every surface shows it: the numbers, the interval's finite bounds and the formatted text."""

    kpi: Kpi
    low: float | None  # None: no data, or the interval has no bound on that side
    high: float | None
    text: KpiText

    @property
    def significant(self) -> bool:
        """The 95% interval of the difference lies wholly above or below zero."""
        return self.kpi.difference is not None and excludes_zero(self.kpi.difference)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape the API, `value report --json` and the export share."""
        k = self.kpi
        return {"name": k.name, "label": k.label, "unit": k.unit, "pilot": k.pilot, "control": k.control,
                "n_pilot": k.n_pilot, "n_control": k.n_control,
                "difference": None if k.difference is None else k.difference.estimate, "ci_low": self.low,
                "ci_high": self.high, "excludes_zero": self.significant, "method": k.method}


def kpi_row(kpi: Kpi) -> KpiRow:
    """A KPI with its numbers formatted for people."""
    d = kpi.difference
    return KpiRow(kpi, None if d is None else _finite(d.low), None if d is None else _finite(d.high), kpi_text(kpi))


def report_json(report: ValueReport, pilot: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole report as JSON (API, CLI --json, the JSON export)."""
    return {"pilot": pilot, "as_of": report.now.isoformat(), "leads": report.leads, "sentence": report.sentence,
            "conclusive": report.conclusive, "more_closed_leads_needed": report.more_needed,
            "minimum_detectable_effect": report.detectable,
            "kpis": [kpi_row(k).to_json() for k in report.kpis.values()]}


EXPORT_COLUMNS = ("kpi", "label", "unit", "pilot", "control", "n_pilot", "n_control", "difference", "ci_low",
                  "ci_high", "method", "as_of")


def report_csv(report: ValueReport) -> str:
    """One row per KPI, for finance: raw numbers (shares as 0-1, minutes, days, currency), no formatting."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for kpi in report.kpis.values():
        row = kpi_row(kpi).to_json()
        writer.writerow([row["name"], row["label"], row["unit"], row["pilot"], row["control"], row["n_pilot"],
                         row["n_control"], row["difference"], row["ci_low"], row["ci_high"], row["method"],
                         report.now.isoformat()])
    return out.getvalue()


def finite_interval(point: WeeklyPoint | None) -> tuple[float | None, float | None, float | None] | None:
    """A weekly point's estimate and 95% bounds for a chart (None where unbounded), or None without data."""
    if point is None or point.interval is None:
        return None
    i = point.interval
    return _finite(i.estimate), _finite(i.low), _finite(i.high)


@dataclass(frozen=True)
class PilotValue:
    """A pilot's value as the page, the API and the CLI show it."""

    pilot: dict[str, Any]  # the pilot's settings and lifecycle (name, status, unit, control share, ...)
    report: ValueReport
    rows: list[KpiRow]
    weekly: dict[str, list[WeeklyPoint]]

    def to_json(self) -> dict[str, Any]:
        """The report, with the weekly series, as JSON."""
        out = report_json(self.report, self.pilot)
        out["weekly"] = {kpi: weekly_json(points) for kpi, points in self.weekly.items()}
        return out


def pilot_value(pilot: dict[str, Any], facts: list[LeadFacts], now: datetime) -> PilotValue:
    """The KPIs of a pilot's leads as they stood at `now`, with weekly series from the pilot's start."""
    plan = Plan(horizon=int(pilot["horizon"]), effect=float(pilot["effect"]), clustered=pilot["unit"] != "lead")
    report = value_report(facts, now, float(pilot["control_share"]), plan)
    start = pilot["started_at"]
    until = pilot.get("ended_at") or now
    series = {kpi: weekly(facts, kpi, start, min(until, now)) for kpi in WEEKLY_KPIS}
    return PilotValue(pilot, report, [kpi_row(k) for k in report.kpis.values()], series)


def weekly_json(points: list[WeeklyPoint]) -> list[dict[str, Any]]:
    """Weekly points for the page's charts: one series per group, interval bands where there is data."""
    out = []
    for p in points:
        value, low, high = finite_interval(p) or (None, None, None)
        out.append({"week": p.week.date().isoformat(), "group": p.group, "n": p.n, "value": value, "low": low,
                    "high": high})
    return out


def current_value(session: Session, now: datetime) -> PilotValue | None:
    """The open pilot's value (else the newest ended pilot's) as it stands at `now`; None before the first pilot."""
    pilot = open_pilot(session) or latest_pilot(session)
    if pilot is None:
        return None
    return pilot_value(pilot_view(session, pilot), stored_facts(session, pilot), now)


EXPORTS = {"csv": "text/csv", "json": "application/json"}


def export(session: Session, now: datetime, fmt: str) -> tuple[str, str, str]:
    """The current pilot's KPIs for finance: (body, media type, file name); CSV or JSON."""
    if fmt not in EXPORTS:
        raise OperationError(f"unknown export format {fmt!r}; use csv or json", status=400)
    view = current_value(session, now)
    if view is None:
        raise OperationError("no pilot has run yet: start one with `leadbridge value pilot start`", status=404)
    name = f"leadbridge-value-{now:%Y%m%d}.{fmt}"
    if fmt == "csv":
        return report_csv(view.report), EXPORTS[fmt], name
    return json.dumps(view.to_json(), default=str, indent=2), EXPORTS[fmt], name
