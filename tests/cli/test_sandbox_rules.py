"""Sandbox mode's default rules: created on a fresh install, valid, and naming owners and a list the sandbox CRM has,
whose owners the sandbox's Slack knows (so a hot lead's DM reaches its new owner)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from cli.sandbox_mode import SandboxPlan, wire_sandbox
from connectors.hubspot.client import HubSpotConnector
from connectors.slack import SlackBot
from core.runtime import ServiceUrls
from core.settings import load_settings
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from sandbox.slack_api import SANDBOX_BOT_TOKEN
from services.alerts import check_actions
from storage.db import Database
from storage.models import AlertRule


def test_default_rules_name_what_the_sandbox_has(db: Database, sandbox: SandboxCRM, service_urls: ServiceUrls,
                                                settings_overrides: dict[str, Any]) -> None:
    with db.session() as session:
        session.execute(delete(AlertRule))
    settings = load_settings({**settings_overrides, "simulator_rate": 0}, env_file=None)
    wire_sandbox(settings, service_urls.database_url, SandboxPlan(url=sandbox.base_url, env={}, sandbox_child=None))
    with db.session() as session:
        rules = {r.name: r for r in session.scalars(select(AlertRule))}
        assert set(rules) == {"Hot A/B leads", "Warm leads: nurture"}
        hot, warm = rules["Hot A/B leads"], rules["Warm leads: nurture"]
        assert [(a["kind"], a["params"].get("crm")) for a in hot.actions] == [
            ("crm_owner", "hubspot"), ("crm_task", "hubspot"), ("crm_owner", "salesforce"), ("crm_task", "salesforce"),
            ("crm_sequence", None), ("slack_owner_dm", None), ("slack_channel", None)]
        assert hot.routing["segment"]["grades"] == ["A", "B"] and warm.threshold < hot.threshold
        for rule in rules.values():
            assert check_actions(rule.actions) == rule.actions
        owners = hot.actions[0]["params"]["owners"]
        list_id = warm.actions[0]["params"]["list_id"]
        users, campaign = hot.actions[2]["params"]["owners"], warm.actions[1]["params"]["list_id"]
        sequence = hot.actions[4]["params"]
        session.execute(delete(AlertRule))
    hubspot = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url)
    bot = SlackBot(SANDBOX_BOT_TOKEN, base_url=sandbox.base_url + "/api/")
    for owner in owners:
        email = hubspot.owner_email(owner)
        assert email and bot.user_by_email(email)
    assert list_id in sandbox.store.hs_actions.lists
    seller = sandbox.store.hs_actions.users[sequence["user_id"]]
    assert sequence["sequence_id"] in sandbox.store.hs_actions.sequences
    assert seller["seat"] and sequence["sender_email"] in seller["inboxes"]
    assert users == sandbox.store.sf_demo["users"] and campaign == sandbox.store.sf_demo["campaign"]
