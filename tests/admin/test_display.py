"""Pages say things the way a person reads them (issue 19): times in UTC instead of epoch milliseconds, field names
read whole, and the audit log as "field: before → after" lines with the before recorded wherever a writer changes
something. Formatting lives in bridge/admin/display.py."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bridge.admin.display import audit_changes, epoch_ms, plain, timestamp
from cli.sources_commands import sources as sources_cli
from connectors.base import shown_values
from core.records import utcnow
from sandbox import SandboxCRM
from services import alerts, users
from services import sources as source_ops
from services.alerts import RuleInput
from storage.db import Database
from storage.models import AuditEntry, Lead, User
from tests.admin.conftest import PASSWORD, browser_log_in, csrf_of, log_in, shot
from tests.admin.test_trial_write import hubspot_app  # noqa: F401  (a fixture)
from tests.crm_ids import with_ids

EPOCH_MS = re.compile(r"\b1\d{12}\b")  # epoch milliseconds from 2001 to 2286


def visible(page_html: str) -> str:
    """The text a browser shows of a page's <main> (tags dropped, entities decoded, spaces collapsed)."""
    main = page_html.split("<main", 1)[-1]
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", main, flags=re.DOTALL)
    text = re.sub(r"</?(?:code|span|a|strong|em|time|b)\b[^>]*>", "", text)  # inline: no break in the text
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


# --- the filters -----------------------------------------------------------------------------------


def test_times_and_values_read_as_text() -> None:
    moment = datetime(2026, 12, 3, 17, 22, 29, tzinfo=UTC)
    assert epoch_ms(str(int(moment.timestamp() * 1000))) == "2026-12-03 17:22:29 UTC"  # HubSpot's datetime form
    assert epoch_ms(int(moment.timestamp() * 1000)) == "2026-12-03 17:22:29 UTC"
    assert epoch_ms("2026-12-03T17:22:29.000Z") == "2026-12-03 17:22:29 UTC"  # Salesforce's form
    assert epoch_ms("2026-12-03T18:22:29+01:00") == "2026-12-03 17:22:29 UTC"
    assert epoch_ms("42") == "42" and epoch_ms("") == "–"  # not a time the product wrote
    assert timestamp(moment) == "2026-12-03 17:22:29 UTC" and timestamp(None) == "–"
    assert plain({"grades": ["A", "B"], "min_employees": 50}) == "grades: A, B; min_employees: 50"
    assert plain([{"source": "seats", "fit": True}, {"source": "rating", "fit": False}]) == (
        "source: seats; fit: yes | source: rating; fit: no")
    assert plain("<script>") == "<script>" and plain(None) == "–"  # escaping is the template's job
    assert plain("x" * 500).endswith("…") and len(plain("x" * 500)) == 300


def test_audit_changes_are_fields_that_moved() -> None:
    changes = audit_changes({"threshold": 80, "name": "Hot"}, {"threshold": 90, "name": "Hot"})
    assert [(c.field, c.before, c.after) for c in changes] == [("threshold", "80", "90")]
    created = audit_changes(None, {"name": "Hot", "threshold": 80})
    assert [(c.field, c.before, c.after) for c in created] == [("name", None, "Hot"), ("threshold", None, "80")]
    deleted = audit_changes({"name": "Hot"}, None)
    assert [(c.field, c.before, c.after) for c in deleted] == [("name", "Hot", None)]


# --- the audit log ---------------------------------------------------------------------------------


def test_the_audit_log_shows_each_change_as_before_and_after(admin_client: Any, clean_db: Database,
                                                             settings_overrides: dict[str, Any]) -> None:
    from core.settings import load_settings

    settings = load_settings(settings_overrides, env_file=None)
    actor = admin_client.user.email
    with clean_db.session() as session:
        rule = alerts.create_rule(session, actor, RuleInput(name="Hot <leads>", threshold=80, channel="#hot"))
        alerts.update_rule(session, actor, rule.id, RuleInput(threshold=90, grades=["A", "B"]))
        source, _ = source_ops.create_source(session, settings, actor, kind="events", name="web")
        source_ops.rotate_secret(session, settings, actor, source.id, overlap_hours=2)
        viewer = users.add_user(session, actor, email="vi@acme.io", password=PASSWORD, role="viewer")
        token = users.create_token(session, actor, viewer.id, "ci")
        users.revoke_token(session, actor, token.id)

    page = admin_client.get("/admin/audit").text
    text = visible(page)
    assert "\\u003c" not in page and '{"' not in text and "[redacted]" not in text
    assert "name: Hot <leads>" in text  # the create: what it was made with
    assert "threshold: 80 → 90" in text and "grades: none → A, B" in text
    with clean_db.session() as session:
        entries = {e.action: e for e in session.scalars(select(AuditEntry))}
    # The writers that change something record what it was before.
    rotation = entries["source.rotate_secret"]
    assert rotation.before == {"old_key_accepted_until": None}
    until = rotation.after["old_key_accepted_until"]
    assert datetime.fromisoformat(until) - utcnow() > timedelta(hours=1.9)
    assert f"old_key_accepted_until: – → {timestamp(until)}" in text
    assert entries["api_token.revoke"].before == {"name": "ci", "revoked": False}
    assert "revoked: no → yes" in text


def test_the_cli_records_what_a_source_was(service_env: dict[str, str], clean_db: Database) -> None:
    runner = CliRunner()
    for args in (["add", "--kind", "events", "--name", "site"], ["disable", "site"],
                 ["rotate-secret", "site", "--overlap-hours", "3"]):
        done = runner.invoke(sources_cli, args, env=service_env)
        assert done.exit_code == 0, done.output
    with clean_db.session() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [e.action for e in entries] == ["source.create", "source.disable", "source.rotate_secret"]
    created, disabled, rotated = entries
    assert created.before is None and created.after["enabled"] is True
    assert disabled.before["enabled"] is True and disabled.after["enabled"] is False
    assert rotated.before["old_key_accepted_until"] is None and rotated.after["old_key_accepted_until"]
    assert [(c.field, c.before, c.after) for c in audit_changes(disabled.before, disabled.after)] == [
        ("enabled", "yes", "no")]


# --- the field mapping page ------------------------------------------------------------------------


def test_the_test_write_result_shows_scored_at_as_a_time(hubspot_app: Any, sandbox: SandboxCRM,  # noqa: F811
                                                         clean_db: Database, make_user: Callable[..., Any]) -> None:
    contact = sandbox.store.hs_create("contacts", {"email": "ana@acme.io"})["id"]
    scored_at = datetime(2026, 12, 3, 9, 30, 5, tzinfo=UTC)
    with clean_db.session() as session:
        session.add_all(with_ids(Lead(email="ana@acme.io", properties={}, score=91, grade="A",
                                      reasons=["+ requested a demo"], model_version="m7", scored_at=scored_at),
                                 hubspot=contact))
    client = hubspot_app.test_client()
    assert log_in(client, make_user("admin").email).status_code == 302
    page = client.get("/admin/mappings")
    answer = client.post("/admin/mappings/test-write", data={"crm": "hubspot", "record_id": contact,
                                                             "object_type": "contacts",
                                                             "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 200
    result = visible(answer.text.split('id="test-write-result"', 1)[1].split("</section>", 1)[0])
    assert "written" in result and "leadbridge_scored_at 2026-12-03 09:30:05 UTC" in result
    assert not EPOCH_MS.search(result), result
    # What reached the CRM is still HubSpot's own form (epoch milliseconds): only the page reads it out.
    shown = sandbox.store.hs_get("contacts", contact)["properties"]["leadbridge_scored_at"]
    assert shown == str(int(scored_at.timestamp() * 1000))
    assert shown_values(91, "A", ["+ requested a demo"], "m7", scored_at)["scored_at"] == scored_at


@pytest.mark.slow
def test_mapping_inputs_show_whole_field_names(web: str, browser_page: Any, make_user: Callable[..., User]) -> None:
    page = browser_page
    browser_log_in(page, web, "/admin/mappings", make_user("admin"))
    shot(page, "30-field-mapping")
    inputs = page.locator("input.field-name, form[id^=mapping-] input[name^=field_]")
    assert inputs.count() >= 12  # HubSpot contacts and companies, Salesforce Lead, Contact, Account...
    cut = page.evaluate("""() => [...document.querySelectorAll("form[id^=mapping-] input[name^=field_]")]
        .filter(i => i.scrollWidth > i.clientWidth).map(i => i.form.id + ' ' + i.value)""")
    assert cut == [], f"field names cut off in their inputs: {cut}"
    assert "Leadbridge_Model_Version__c" in [inputs.nth(i).input_value() for i in range(inputs.count())]
