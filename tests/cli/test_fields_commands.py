"""`leadbridge fields discover` and `fields subscriptions` against a real sandbox CRM over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from cli.fields_commands import fields
from connectors.hubspot.client import HubSpotConnector
from sandbox import DEFAULT_HUBSPOT_TOKEN, DEFAULT_SF_SESSION, SandboxCRM


def _env(tmp_path: Path, **extra: str) -> dict[str, Any]:
    # Every CRM setting unset unless given, so the developer's environment cannot leak in.
    names = ("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_BASE_URL", "SALESFORCE_USERNAME", "SALESFORCE_PASSWORD",
             "SALESFORCE_SESSION_ID", "SALESFORCE_INSTANCE_URL", "SALESFORCE_SECURITY_TOKEN")
    env: dict[str, Any] = {name: None for name in names}
    env.update({"LEADBRIDGE_ENV_FILE": "", "LEADBRIDGE_DATA_DIR": str(tmp_path)})
    env.update(extra)
    return env


@pytest.fixture()
def filled(sandbox: SandboxCRM) -> SandboxCRM:
    """The sandbox with one custom contact property and a few contacts filling it."""
    hubspot = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url)
    hubspot.api.crm.properties.core_api.create("contacts", {
        "name": "plan_tier", "label": "Plan tier", "type": "enumeration", "fieldType": "select",
        "groupName": "contactinformation",
        "options": [{"label": o, "value": o, "hidden": False} for o in ("starter", "pro")]})
    for i in range(5):
        sandbox.store.hs_create("contacts", {"email": f"c{i}@acme.io", "plan_tier": "pro" if i < 3 else None})
    return sandbox


def test_discover_prints_a_table_and_json(filled: SandboxCRM, tmp_path: Path) -> None:
    runner = CliRunner()
    env = _env(tmp_path, HUBSPOT_ACCESS_TOKEN=DEFAULT_HUBSPOT_TOKEN, HUBSPOT_BASE_URL=filled.base_url)
    as_json = runner.invoke(fields, ["discover", "hubspot", "--json", "--sample", "50"], env=env)
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["crm"] == "hubspot" and report["objects"] == ["contacts"] and report["sample"] == 50
    plan = next(f for f in report["fields"] if f["name"] == "plan_tier")
    assert plan["custom"] and plan["type"] == "enumeration" and plan["options"] == 2
    assert plan["fill_rate"] == 0.6 and plan["sampled"] == 5 and plan["suggested_kind"] == "categorical"
    owner = next(f for f in report["fields"] if f["name"] == "hubspot_owner_id")
    assert owner["suggested_kind"] == "skip" and "owner" in owner["reason"]

    table = runner.invoke(fields, ["discover", "hubspot", "--object", "contacts"], env={**env, "COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    line = next(row for row in table.output.splitlines() if "plan_tier" in row)
    assert "Plan tier" in line and "enumeration" in line and "60%" in line and "categorical" in line
    assert "yes" in line  # custom


def test_discover_salesforce_through_the_sandbox(sandbox: SandboxCRM, tmp_path: Path) -> None:
    requests.post(sandbox.base_url + "/_sandbox/salesforce/Lead", timeout=10,
                  json={"fields": {"LastName": "Ng", "Company": "Acme", "LeadSource": "Web"}}).raise_for_status()
    env = _env(tmp_path, SALESFORCE_SESSION_ID=DEFAULT_SF_SESSION)
    result = CliRunner().invoke(fields, ["discover", "salesforce", "--json", "--sandbox-url", sandbox.base_url],
                                env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["objects"] == ["Lead", "Contact"]
    source = next(f for f in report["fields"] if f["object_type"] == "Lead" and f["name"] == "LeadSource")
    assert source["fill_rate"] == 1.0 and source["suggested_kind"] == "categorical"


def test_discover_errors_exit_non_zero_with_a_message(sandbox: SandboxCRM, tmp_path: Path) -> None:
    runner = CliRunner()
    none = runner.invoke(fields, ["discover", "hubspot"], env=_env(tmp_path))
    assert none.exit_code == 1 and "HubSpot is not configured" in none.output and "Traceback" not in none.output
    env = _env(tmp_path, HUBSPOT_ACCESS_TOKEN=DEFAULT_HUBSPOT_TOKEN, HUBSPOT_BASE_URL=sandbox.base_url)
    unknown = runner.invoke(fields, ["discover", "hubspot", "--object", "widgets"], env=env)
    assert unknown.exit_code == 1 and "HubSpot has no object 'widgets'" in unknown.output
    wrong = runner.invoke(fields, ["discover", "hubspot"], env={**env, "HUBSPOT_ACCESS_TOKEN": "pat-wrong"})
    assert wrong.exit_code == 1 and "refused the credentials" in wrong.output
    down = runner.invoke(fields, ["discover", "hubspot"], env={**env, "HUBSPOT_BASE_URL": "http://127.0.0.1:9"})
    assert down.exit_code == 1 and "could not be reached" in down.output and "Traceback" not in down.output
    assert runner.invoke(fields, ["discover", "hubspot", "--sample", "5000"], env=env).exit_code == 2


def test_subscriptions_lists_one_per_property_and_reaches_the_sandbox(sandbox: SandboxCRM, tmp_path: Path) -> None:
    runner = CliRunner()
    env = _env(tmp_path)
    text = runner.invoke(fields, ["subscriptions", "plan_tier", "jobtitle", "plan_tier"], env=env)
    assert text.exit_code == 0, text.output
    assert "contact.propertyChange  plan_tier" in text.output and "contact.propertyChange  jobtitle" in text.output
    as_json = runner.invoke(fields, ["subscriptions", "plan_tier", "jobtitle", "--json"], env=env)
    assert json.loads(as_json.output) == {"subscriptions": {"legacyCrmObjects": [
        {"subscriptionType": "contact.propertyChange", "propertyName": "plan_tier", "active": True},
        {"subscriptionType": "contact.propertyChange", "propertyName": "jobtitle", "active": True}]}}

    target = requests.post(sandbox.base_url + "/_sandbox/webhooks", timeout=10, json={
        "kind": "hubspot", "url": "http://127.0.0.1:9/hook", "client_secret": "s"}).json()
    applied = runner.invoke(fields, ["subscriptions", "jobtitle", "--sandbox-url", sandbox.base_url], env=env)
    assert applied.exit_code == 0, applied.output
    targets = requests.get(sandbox.base_url + "/_sandbox/webhooks", timeout=10).json()["targets"]
    assert next(t for t in targets if t["id"] == target["id"])["subscriptions"] == {"contacts": ["jobtitle"]}

    bad = runner.invoke(fields, ["subscriptions", "Not A Name"], env=env)
    assert bad.exit_code == 1 and "is not a HubSpot property name" in bad.output
    nothing = runner.invoke(fields, ["subscriptions"], env=env)  # no schema maps anything in a fresh data dir
    assert nothing.exit_code == 1 and "Traceback" not in nothing.output
    assert "name at least one" in nothing.output or "name the properties" in nothing.output


def test_subscriptions_default_to_the_mapped_properties(sandbox: SandboxCRM, tmp_path: Path) -> None:
    from cli.main import cli

    runner = CliRunner()
    env = _env(tmp_path)
    migrated = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert migrated.exit_code == 0, migrated.output
    for prop, kind in (("plan_tier", "categorical"), ("budget", "numeric")):
        mapped = runner.invoke(fields, ["map", "hubspot", "contacts", prop, "--kind", kind], env=env)
        assert mapped.exit_code == 0, mapped.output
    listed = runner.invoke(fields, ["subscriptions", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    names = [s["propertyName"] for s in json.loads(listed.output)["subscriptions"]["legacyCrmObjects"]]
    assert sorted(names) == ["budget", "plan_tier"]
    runner.invoke(fields, ["unmap", "hubspot", "contacts", "budget"], env=env)
    after = runner.invoke(fields, ["subscriptions", "--json"], env=env)
    assert [s["propertyName"] for s in json.loads(after.output)["subscriptions"]["legacyCrmObjects"]] == ["plan_tier"]
