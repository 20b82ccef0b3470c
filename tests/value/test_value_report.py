"""The Value report's shapes: the rows every surface shows, the finance export and the weekly Slack summary."""

from __future__ import annotations

import csv
import io
import json

from connectors.slack_value import build_value_message
from scoring.value import Plan, value_report, weekly
from services.value import EXPORT_COLUMNS, kpi_row, report_csv, report_json, weekly_json
from tests.value.test_kpis import NOW, T0, fixture


def _report():  # type: ignore[no-untyped-def]
    return value_report(fixture(), NOW, control_share=0.5, plan=Plan(horizon=100, draws=200))


def test_rows_format_each_unit_for_people() -> None:
    rows = {k: kpi_row(v) for k, v in _report().kpis.items()}
    assert rows["response_time"].text.pilot == "2 min" and rows["response_time"].text.control == "120 min"
    assert rows["response_time"].text.difference.startswith("-118 min, 95% CI ")
    assert rows["mql_to_sql"].text.pilot == "50.0%" and rows["mql_to_sql"].text.difference.startswith("+16.7 pts")
    assert rows["cycle_days"].text.pilot == "20.0 days"


def test_json_and_csv_exports_carry_raw_numbers() -> None:
    report = _report()
    data = report_json(report, {"name": "Q1 pod"})
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN or infinity reaches a client
    assert data["pilot"] == {"name": "Q1 pod"} and data["leads"] == {"pilot": 4, "control": 4}
    win = next(k for k in data["kpis"] if k["name"] == "win_rate")
    assert win["n_pilot"] == 3 and abs(win["pilot"] - 1 / 3) < 1e-9
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == len(report.kpis)
    assert {r["kpi"] for r in rows} >= {"response_time", "win_rate", "velocity"}
    assert float(next(r for r in rows if r["kpi"] == "pipeline_per_lead")["pilot"]) == 4000.0


def test_weekly_points_serialise_for_the_charts() -> None:
    points = weekly_json(weekly(fixture(), "win_rate", T0, NOW))
    assert points[0]["week"] == T0.date().isoformat() and {p["group"] for p in points} == {"pilot", "control"}


def test_the_slack_summary_says_the_verdict_and_each_kpi() -> None:
    report = _report()
    message = build_value_message("Q1 <pod>", report.sentence, [kpi_row(k).text for k in report.kpis.values()],
                                  report.leads, admin_url="https://lb.example/admin/value")
    assert message["text"].startswith("Lead scoring pilot Q1 <pod>: Scored leads were contacted 118 min sooner")
    body = json.dumps(message["blocks"])
    assert "Q1 &lt;pod&gt;" in body and "Win rate" in body and "open_value" in body
    assert len(message["blocks"][2]["text"]["text"]) <= 3000
