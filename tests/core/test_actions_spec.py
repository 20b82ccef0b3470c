"""Where a rule action runs: Slack, the CRM its `crm` parameter names, or the CRM the lead is in."""

from __future__ import annotations

import pytest

from core.actions import Action, ActionSpecError
from tasks.actions import action_crm

BOTH = {"hubspot": "101", "salesforce": "00Q000000000001AAA"}


def test_an_action_runs_in_the_crm_it_names_or_the_leads() -> None:
    assert action_crm(Action("slack_owner_dm"), BOTH) == "slack"
    assert action_crm(Action("crm_task"), BOTH) == "hubspot"  # in both: HubSpot first
    assert action_crm(Action("crm_task"), {"salesforce": BOTH["salesforce"]}) == "salesforce"
    assert action_crm(Action("crm_task", {"crm": "salesforce"}), BOTH) == "salesforce"
    # Named CRM the lead is not in: nothing to act on (the delivery is recorded as skipped).
    assert action_crm(Action("crm_owner", {"crm": "salesforce", "queue": "00G1"}), {"hubspot": "101"}) is None
    assert action_crm(Action("crm_sequence", {"sequence_id": "1", "user_id": "2", "sender_email": "a@b.io"}),
                      {"salesforce": BOTH["salesforce"]}) is None  # sequences are HubSpot's
    assert action_crm(Action("crm_task"), {}) is None


def test_the_crm_parameter_is_taken_only_by_kinds_that_run_in_either_crm() -> None:
    assert Action.from_json({"kind": "crm_list", "params": {"crm": "hubspot", "list_id": "1001"}}).crm == "hubspot"
    assert Action.from_json({"kind": "crm_task", "params": {}}).crm is None
    with pytest.raises(ActionSpecError, match="unknown parameter"):
        Action.from_json({"kind": "slack_channel", "params": {"crm": "hubspot"}})
