"""`crm setup` and `simulate` commands against a real sandbox."""

from __future__ import annotations

from click.testing import CliRunner

from cli.crm_commands import crm
from cli.simulate_commands import simulate
from sandbox import DEFAULT_HUBSPOT_TOKEN, DEFAULT_SF_SESSION, SandboxCRM


def test_crm_setup_hubspot_twice(sandbox: SandboxCRM) -> None:
    runner = CliRunner()
    args = ["setup", "hubspot", "--access-token", DEFAULT_HUBSPOT_TOKEN, "--base-url", sandbox.base_url]
    first = runner.invoke(crm, args)
    assert first.exit_code == 0 and "created  contacts.leadbridge_score" in first.output
    second = runner.invoke(crm, args)
    assert second.exit_code == 0 and "created" not in second.output
    bad = runner.invoke(crm, ["setup", "hubspot", "--access-token", "nope", "--base-url", sandbox.base_url])
    assert bad.exit_code == 1 and "HTTP 401" in bad.output and "Traceback" not in bad.output


def test_crm_setup_salesforce_reports_then_creates(sandbox: SandboxCRM) -> None:
    runner = CliRunner()
    args = ["setup", "salesforce", "--session-id", DEFAULT_SF_SESSION, "--sandbox-url", sandbox.base_url]
    check = runner.invoke(crm, args)
    assert check.exit_code == 1 and "MISSING  Lead.Leadbridge_Score__c (Number)" in check.output
    assert "daily API budget:" in check.output
    created = runner.invoke(crm, args + ["--create"])
    assert created.exit_code == 0 and "created  Account.Leadbridge_Scored_At__c" in created.output
    assert runner.invoke(crm, ["setup", "salesforce"]).exit_code == 2  # no credentials: usage error


def test_simulate_into_sandbox_and_bad_input(sandbox: SandboxCRM, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    out = tmp_path / "events.jsonl"
    res = runner.invoke(simulate, ["--accounts", "4", "--sandbox-url", sandbox.base_url, "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert len(sandbox.store.hs_objects["contacts"]) > 0 and out.with_suffix(".outcomes.jsonl").exists()
    assert out.read_text().count("\n") > 10
    bad = runner.invoke(simulate, ["--events-url", "http://127.0.0.1:9/x", "--events-secret", "whsec_"])
    assert bad.exit_code == 2 and "--events-secret" in bad.output
    assert runner.invoke(simulate, ["--days", "30", "--drift-day", "40", "--output", str(out)]).exit_code == 2
