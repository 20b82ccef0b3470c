"""The rule editor in Chromium against `leadbridge web`: add a CRM task and an owner round robin to a rule, see only
each kind's parameters, remove an action, save (stored as checked actions), see a bad parameter refused on the page,
and run the dry run over the score history before saving."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from playwright.sync_api import expect

from core.records import utcnow
from storage.db import Database
from storage.models import AlertRule, Lead, ScoreHistory, User
from tests.admin.conftest import browser_log_in, shot


def _seed(db: Database) -> int:
    now = utcnow()
    with db.session() as session:
        rule = AlertRule(name="Hot leads", threshold=75, channel="#sales", cooldown_minutes=1440, routing={},
                         enabled=True, created_at=now)
        session.add(rule)
        for i, (before, after) in enumerate(((40, 80), (50, 90), (30, 60))):
            lead = Lead(email=f"p{i}@acme.example", grade="A")
            session.add(lead)
            session.flush()
            for minutes, score in ((120, before), (60, after)):
                at = now - timedelta(minutes=minutes)
                session.add(ScoreHistory(lead_id=lead.id, score=score, probability=score / 100, grade="A", reasons=[],
                                         model_version="v1", trigger="event", feature_time=at, created_at=at))
        session.flush()
        return rule.id


def test_rule_editor_actions_and_dry_run(web: str, browser_page: Any, clean_db: Database,
                                         make_user: Callable[..., User]) -> None:
    rule_id = _seed(clean_db)
    page = browser_page
    browser_log_in(page, web, f"/admin/alerts/{rule_id}", make_user("admin"))
    form = page.locator("#edit-rule")
    rows = form.locator(".action-row")
    assert rows.count() == 2  # the channel post it always had, and an empty row to add one
    assert rows.nth(0).locator("select[name=action_kind]").input_value() == "slack_channel"
    assert not rows.nth(0).locator("input[name=action_subject]").is_visible()  # a channel post takes nothing

    rows.nth(1).locator("select[name=action_kind]").select_option("crm_task")
    assert rows.nth(1).locator("input[name=action_subject]").is_visible()
    assert not rows.nth(1).locator("input[name=action_owners]").is_visible()
    rows.nth(1).locator("input[name=action_subject]").fill("Call this hot lead")
    rows.nth(1).locator("input[name=action_due_days]").fill("2")
    rows.nth(1).locator("select[name=action_priority]").select_option("high")
    form.locator("button.add-action").click()
    assert rows.count() == 3
    rows.nth(2).locator("select[name=action_kind]").select_option("crm_owner")
    rows.nth(2).locator("input[name=action_owners]").fill("7001, 7002")
    form.locator("button.add-action").click()
    rows.nth(3).locator("select[name=action_kind]").select_option("slack_owner_dm")
    rows.nth(0).locator("button.remove-action").click()  # no channel post any more
    assert rows.count() == 3

    # The dry run counts the unsaved threshold: two leads crossed 75, three crossed 55.
    form.locator("button.dry-run-button").click()
    result = form.locator(".dry-run-result")
    expect(result).to_have_text(re.compile(r"^2 lead\(s\) would have fired it in the last 7 days"))
    form.locator("input[name=threshold]").fill("55")
    form.locator("button.dry-run-button").click()
    expect(result).to_have_text(re.compile(r"^3 lead\(s\)"))
    shot(page, "rule-editor-dry-run")

    form.locator("button:has-text('Save')").click()
    page.wait_for_url("**/admin/alerts")
    assert "Call this hot lead" not in page.content()  # the list shows kinds, not parameters
    assert "CRM task for the owner" in page.locator("#rules-table").text_content()
    with clean_db.session() as session:
        saved = session.get(AlertRule, rule_id)
        assert saved.threshold == 55
        assert saved.actions == [
            {"kind": "crm_task", "params": {"subject": "Call this hot lead", "due_days": 2, "priority": "high"}},
            {"kind": "crm_owner", "params": {"owners": ["7001", "7002"]}},
            {"kind": "slack_owner_dm", "params": {}}]

    # A bad parameter is refused on the page, naming the action and the parameter; nothing is saved.
    page.goto(web + f"/admin/alerts/{rule_id}")
    rows = page.locator("#edit-rule .action-row")
    rows.nth(1).locator("input[name=action_owners]").fill("7001")
    rows.nth(3).locator("select[name=action_kind]").select_option("crm_owner")
    rows.nth(3).locator("input[name=action_queue]").fill("00G000000000001")
    rows.nth(3).locator("input[name=action_owners]").fill("7003")
    page.locator("#edit-rule button:has-text('Save')").click()
    page.wait_for_load_state()
    assert "action 4 (crm_owner): give owners or a queue, not both" in page.content()
    shot(page, "rule-editor-refused")
    with clean_db.session() as session:
        assert len(session.get(AlertRule, rule_id).actions) == 3
