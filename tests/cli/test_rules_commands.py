"""`leadbridge rules ...` on the test database: add a rule with actions, change them, refuse a bad action naming it
(exit 1), list, dry-run over score history, remove; every change audited."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from click.testing import CliRunner
from sqlalchemy import delete, select

from cli.rules_commands import rules
from core.records import utcnow
from storage.db import Database
from storage.models import AlertRule, AuditEntry, Lead, ScoreHistory


def test_rules_commands(db: Database, service_env: dict[str, str]) -> None:
    with db.session() as session:
        session.execute(delete(AlertRule))
        lead = Lead(email="cli-dry-run@acme.example", grade="A")
        session.add(lead)
        session.flush()
        now = utcnow()
        for minutes, score in ((90, 50), (30, 88)):
            at = now - timedelta(minutes=minutes)
            session.add(ScoreHistory(lead_id=lead.id, score=score, probability=score / 100, grade="A", reasons=[],
                                     model_version="v1", trigger="event", feature_time=at, created_at=at))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(rules, list(args), env=service_env, catch_exceptions=False)

    added = run("add", "CLI hot", "--channel", "#sales", "--threshold", "80", "--grade", "A",
                "--action", "slack_owner_dm", "--action", '{"kind": "crm_task", "params": {"due_days": 2}}')
    assert added.exit_code == 0, added.output
    assert "slack_owner_dm, crm_task" in added.output and "grades A" in added.output
    rule_id = int(added.output.split()[1].rstrip(":"))

    refused = run("set", str(rule_id), "--action", '{"kind": "crm_list", "params": {}}')
    assert refused.exit_code == 1 and "action 1: crm_list: list_id required" in refused.output
    bad_json = run("set", str(rule_id), "--action", "{nope")
    assert bad_json.exit_code == 2 and "not JSON" in bad_json.output

    changed = run("set", str(rule_id), "--action", '{"kind": "crm_list", "params": {"list_id": "1001"}}',
                  "--cooldown", "30")
    assert changed.exit_code == 0, changed.output
    listed = json.loads(run("list", "--json").output)
    assert listed[0]["actions"] == [{"kind": "crm_list", "params": {"list_id": "1001"}}]
    assert listed[0]["cooldown_minutes"] == 30 and listed[0]["threshold"] == 80

    dry = run("dry-run", str(rule_id))
    assert dry.exit_code == 0 and dry.output.startswith("1 lead(s) would have fired it in the last 7 days")
    assert run("dry-run", str(rule_id), "--threshold", "95").output.startswith("0 lead(s)")
    assert run("dry-run", "999999").exit_code == 1

    assert run("remove", str(rule_id)).exit_code == 0
    with db.session() as session:
        done = [e.action for e in session.scalars(select(AuditEntry).where(
            AuditEntry.target == f"alert_rule:{rule_id}").order_by(AuditEntry.id))]
        session.execute(delete(ScoreHistory).where(ScoreHistory.lead_id == lead.id))
        session.execute(delete(Lead).where(Lead.id == lead.id))
    assert done == ["alert_rule.create", "alert_rule.update", "alert_rule.delete"]
