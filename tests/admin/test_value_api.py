"""The pilot's value where people look (issue 17): GET /api/value and its export, `leadbridge value report` and
`value export`, and the weekly Slack summary (to the sandbox's Slack sink); all from the same stored facts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.value_commands import value
from core.records import utcnow
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from sandbox import SandboxCRM
from storage.db import Database
from storage.models import Pilot
from tasks.resources import Resources
from tasks.value import SUMMARY_EVERY, send_summary_now
from tests.admin.test_fields_api import caller
from tests.admin.value_data import seed_pilot


def test_the_api_reports_and_exports_the_pilot(admin_app: Any, make_token: Any, clean_db: Database) -> None:
    call = caller(admin_app, make_token("viewer"))
    empty = call("GET", "/value")
    assert empty.status_code == 200 and empty.get_json()["pilot"] is None and empty.get_json()["kpis"] == []
    nothing = call("GET", "/value/export")
    assert nothing.status_code == 404 and "no pilot has run yet" in nothing.get_json()["message"]

    groups = seed_pilot(clean_db, utcnow())
    got = call("GET", "/value").get_json()
    assert got["pilot"]["name"] == "Pod A, Q1" and got["leads"] == groups
    kpis = {k["name"]: k for k in got["kpis"]}
    assert set(kpis) == {"response_time", "touched_within_5_min", "mql_to_sql", "lead_to_opportunity", "win_rate",
                         "cycle_days", "pipeline_per_lead", "velocity"}
    response = kpis["response_time"]
    # Pilot leads are touched within minutes, control leads hours later: the interval excludes zero.
    assert response["pilot"] < 15 < 60 < response["control"] and response["ci_high"] < 0 and response["excludes_zero"]
    assert 0 <= kpis["win_rate"]["pilot"] <= 1 and kpis["win_rate"]["n_pilot"] > kpis["win_rate"]["n_control"] > 0
    assert got["sentence"].startswith("Scored leads were contacted")
    # What the closed leads so far can detect (80% power) at the control's win rate, by the arcsine z-test.
    from scoring.experiment import minimum_detectable_effect
    win = kpis["win_rate"]
    assert got["minimum_detectable_effect"] == pytest.approx(
        minimum_detectable_effect(win["n_pilot"], win["n_control"], win["control"]))
    weeks = {p["week"] for p in got["weekly"]["win_rate"]}
    assert len(weeks) == 9 and {p["group"] for p in got["weekly"]["response_time"]} == {"pilot", "control"}

    exported = call("GET", "/value/export?format=csv")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert exported.headers["Content-Disposition"].startswith('attachment; filename="leadbridge-value-')
    rows = {r["kpi"]: r for r in csv.DictReader(io.StringIO(exported.get_data(as_text=True)))}
    assert float(rows["response_time"]["difference"]) == response["difference"]
    as_json = call("GET", "/value/export?format=json")
    assert as_json.mimetype == "application/json" and json.loads(as_json.get_data())["kpis"][0]["name"]
    bad = call("GET", "/value/export?format=xlsx")
    assert bad.status_code == 400 and bad.get_json()["error"] and "format" in json.dumps(bad.get_json())
    assert caller(admin_app, None)("GET", "/value").status_code == 401


def test_the_cli_prints_the_report_and_exports_it(clean_db: Database, service_urls: ServiceUrls,
                                                  tmp_path: Path) -> None:
    runner = CliRunner()
    env = {**service_urls.as_env(), "LEADBRIDGE_ENV_FILE": "", "LEADBRIDGE_DATA_DIR": str(tmp_path)}
    refused = runner.invoke(value, ["export"], env=env)
    assert refused.exit_code == 1 and "no pilot has run yet" in refused.output and "Traceback" not in refused.output
    assert "no pilot yet" in runner.invoke(value, ["report"], env=env).output

    seed_pilot(clean_db, utcnow())
    report = runner.invoke(value, ["report", "--json"], env=env)
    assert report.exit_code == 0, report.output
    body = json.loads(report.output)
    assert body["pilot"]["name"] == "Pod A, Q1" and len(body["kpis"]) == 8
    table = runner.invoke(value, ["report"], env={**env, "COLUMNS": "220"})
    assert table.exit_code == 0 and "Response time (median, minutes)" in table.output
    assert body["sentence"].split(";")[0] in " ".join(table.output.split())
    out = tmp_path / "value.csv"
    assert runner.invoke(value, ["export", "--out", str(out)], env=env).exit_code == 0
    assert out.read_text().splitlines()[0].startswith("kpi,label,unit,pilot,control")


def test_the_weekly_summary_goes_to_slack_once_a_week(clean_db: Database, sandbox: SandboxCRM, redis_url: str,
                                                      settings_overrides: dict[str, Any],
                                                      service_urls: ServiceUrls) -> None:
    url = sandbox.base_url + "/services/T000/B000/value"
    settings = load_settings({**settings_overrides, "slack_webhook_url": url,
                              "public_url": "https://leadbridge.example"}, env_file=None)
    res = Resources(settings, service_urls, clean_db, make_redis_client(redis_url))
    now = utcnow()
    seed_pilot(clean_db, now)
    assert send_summary_now(res, now)
    sent = sandbox.slack.list("/services/T000/B000/value")
    assert len(sent) == 1
    payload = sent[0]["payload"]
    assert payload["text"].startswith("Lead scoring pilot Pod A, Q1: Scored leads were contacted")
    blocks = json.dumps(payload["blocks"])
    assert "Response time (median, minutes)" in blocks and "https://leadbridge.example/admin/value" in blocks
    # Not again within the week; again after it.
    assert not send_summary_now(res, now + SUMMARY_EVERY / 2)
    assert send_summary_now(res, now + SUMMARY_EVERY)
    assert len(sandbox.slack.list("/services/T000/B000/value")) == 2
    # An ended pilot gets no more summaries.
    with clean_db.session() as session:
        pilot = session.query(Pilot).one()
        pilot.status = "ended"
    assert not send_summary_now(res, now + 3 * SUMMARY_EVERY)
