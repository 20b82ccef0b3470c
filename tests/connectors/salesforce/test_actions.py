"""Salesforce rule actions through simple-salesforce against the sandbox CRM over HTTP: Tasks upserted by their
External ID, owners routed to active users or a Lead queue, campaign members, each once per key; retried on
429/5xx; safe after a lost response; refused clearly for inactive users, deleted queues, unknown campaigns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connectors.base import PermanentConnectorError, TransientConnectorError
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.fields import ACTION_KEY_FIELD
from core.actions import Action, ActionTarget
from sandbox import SandboxCRM

from ..conftest import admin, salesforce_for

UPSERT = rf"/sobjects/Task/{ACTION_KEY_FIELD}/"
MEMBERS = r"/sobjects/CampaignMember/?$"


@pytest.fixture
def connector(sandbox: SandboxCRM) -> SalesforceConnector:
    """The Salesforce connector, its fields (and the Task key) provisioned, sleeping not at all between attempts."""
    sf = salesforce_for(sandbox, sleep=lambda s: None)
    assert sf.provision_fields(create=True).ok
    return sf


@pytest.fixture
def demo(sandbox: SandboxCRM) -> dict[str, Any]:
    """The sandbox's routing records: active users, an inactive one, a Lead queue, a campaign."""
    return sandbox.store.sf_demo


def _lead(crm: SandboxCRM, owner: str | None = None) -> str:
    fields = {"LastName": "Ruiz", "FirstName": "Ana", "Company": "Acme"}
    if owner:
        fields["OwnerId"] = owner
    return crm.store.sf_create("Lead", fields, source="CRM_UI")


def _target(record_id: str, owner: str | None = None, turn: int = 0, object_type: str = "Lead") -> ActionTarget:
    return ActionTarget(lead_id=1, crm="salesforce", object_type=object_type, object_id=record_id, owner_id=owner,
                        name="Ana Ruiz", company="Acme", score=91, previous_score=58, grade="B",
                        reasons=("+12: requested a demo",), rule="hot leads", turn=turn)


def _fault(crm: SandboxCRM, **spec: Any) -> None:
    resp = admin(crm, "POST", "/faults", json=spec)
    assert resp.status_code == 201, resp.text


def _tasks(crm: SandboxCRM) -> list[dict[str, Any]]:
    return list(crm.store.sf_records["Task"].values())


def test_setup_provisions_the_task_key_as_an_external_id(sandbox: SandboxCRM, connector: SalesforceConnector) -> None:
    field = sandbox.store.sf_field("Task", ACTION_KEY_FIELD)
    assert field is not None and field["externalId"] and field["unique"]
    assert f"Task.{ACTION_KEY_FIELD}" in connector.check_fields().existing


def test_task_is_upserted_once_per_key_for_the_owner(sandbox: SandboxCRM, connector: SalesforceConnector,
                                                     demo: dict[str, Any]) -> None:
    rep = demo["users"][0]
    lead = _lead(sandbox, rep)
    first = connector.run_action(Action("crm_task", {"due_days": 3, "priority": "low"}), _target(lead, rep), "lbt1")
    again = connector.run_action(Action("crm_task", {"due_days": 3, "priority": "low"}), _target(lead, rep), "lbt1")

    assert first.status == "done" and again.status == "exists" and again.vendor_id == first.vendor_id
    [task] = _tasks(sandbox)
    assert task["Id"] == first.vendor_id and task[ACTION_KEY_FIELD] == "lbt1"
    assert task["WhoId"] == lead and task["OwnerId"] == rep
    assert task["Subject"] == "Call Ana Ruiz: score 91 (B)"
    assert task["Status"] == "Not Started" and task["Priority"] == "Low"
    assert task["ActivityDate"] == (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    assert "+12: requested a demo" in task["Description"]


def test_a_queue_owned_lead_gets_a_task_owned_by_the_api_user(sandbox: SandboxCRM, connector: SalesforceConnector,
                                                              demo: dict[str, Any]) -> None:
    lead = _lead(sandbox, demo["queue"])
    assert connector.run_action(Action("crm_task"), _target(lead, demo["queue"]), "lbq").status == "done"
    assert _tasks(sandbox)[0]["OwnerId"] == sandbox.store.sf_default_owner  # a queue cannot own a Task


@pytest.mark.parametrize("status", [429, 503])
def test_task_is_retried_on_429_and_5xx_and_lands_once(sandbox: SandboxCRM, connector: SalesforceConnector,
                                                      status: int) -> None:
    lead = _lead(sandbox)
    _fault(sandbox, route=UPSERT, method="PATCH", status=status, count=2)
    assert connector.run_action(Action("crm_task"), _target(lead), "lbt-retry").status == "done"
    assert len(_tasks(sandbox)) == 1
    assert [r["status"] for r in sandbox.requests.query(path=UPSERT) if r["method"] == "PATCH"] == [status, status,
                                                                                                     201]


def test_lost_response_after_the_commit_makes_one_task(sandbox: SandboxCRM, connector: SalesforceConnector) -> None:
    lead = _lead(sandbox)
    once = salesforce_for(sandbox, retry_attempts=1)  # as a worker task: Celery retries
    _fault(sandbox, route=UPSERT, method="PATCH", kind="lost_response", count=1)
    with pytest.raises(TransientConnectorError):
        once.run_action(Action("crm_task"), _target(lead), "lbt-lost")
    assert len(_tasks(sandbox)) == 1  # Salesforce committed it
    retried = once.run_action(Action("crm_task"), _target(lead), "lbt-lost")
    assert retried.status == "exists" and retried.vendor_id == _tasks(sandbox)[0]["Id"]
    assert len(_tasks(sandbox)) == 1


def test_a_replay_does_not_reopen_a_closed_task(sandbox: SandboxCRM, connector: SalesforceConnector) -> None:
    lead = _lead(sandbox)
    made = connector.run_action(Action("crm_task"), _target(lead), "lbt-closed")
    sandbox.store.sf_update("Task", made.vendor_id or "", {"Status": "Completed"}, source="CRM_UI")
    assert connector.run_action(Action("crm_task"), _target(lead), "lbt-closed").status == "exists"
    assert _tasks(sandbox)[0]["Status"] == "Completed"


def test_task_for_an_inactive_owner_is_refused_clearly(sandbox: SandboxCRM, connector: SalesforceConnector,
                                                       demo: dict[str, Any]) -> None:
    lead = _lead(sandbox)
    with pytest.raises(PermanentConnectorError) as info:
        connector.run_action(Action("crm_task"), _target(lead, demo["inactive_user"]), "lbt-inactive")
    assert info.value.code == "INACTIVE_OWNER_OR_USER" and demo["inactive_user"] in str(info.value)
    assert _tasks(sandbox) == []


def test_owner_round_robin_skips_inactive_users(sandbox: SandboxCRM, connector: SalesforceConnector,
                                               demo: dict[str, Any]) -> None:
    users = demo["users"]
    rotate = Action("crm_owner", {"owners": [demo["inactive_user"], users[0], users[1]]})
    chosen = []
    for turn in range(3):
        lead = _lead(sandbox)
        result = connector.run_action(rotate, _target(lead, turn=turn), f"lbo{turn}")
        assert result.status == "done" and "skipped: inactive" in result.detail
        assert sandbox.store.sf_get("Lead", lead)["OwnerId"] == result.vendor_id
        assert connector.run_action(rotate, _target(lead, turn=turn), f"lbo{turn}").status == "exists"
        chosen.append(result.vendor_id)
    assert chosen == [users[0], users[1], users[0]]

    with pytest.raises(PermanentConnectorError, match="none of the users"):
        connector.run_action(Action("crm_owner", {"owners": [demo["inactive_user"]]}), _target(_lead(sandbox)), "x")


def test_owner_to_a_queue_and_the_queue_refusals(sandbox: SandboxCRM, connector: SalesforceConnector,
                                                 demo: dict[str, Any]) -> None:
    lead = _lead(sandbox, demo["users"][0])
    to_queue = Action("crm_owner", {"queue": demo["queue"]})
    assert connector.run_action(to_queue, _target(lead), "lbq").status == "done"
    assert sandbox.store.sf_get("Lead", lead)["OwnerId"] == demo["queue"]
    assert connector.run_action(to_queue, _target(lead), "lbq").status == "exists"

    sandbox.store.sf_records["Group"].pop(demo["queue"])  # an admin deletes the queue
    other = _lead(sandbox, demo["users"][0])
    with pytest.raises(PermanentConnectorError) as deleted:
        connector.run_action(to_queue, _target(other), "lbq2")
    assert deleted.value.code == "INVALID_CROSS_REFERENCE_KEY" and demo["queue"] in str(deleted.value)
    assert sandbox.store.sf_get("Lead", other)["OwnerId"] == demo["users"][0]

    contact = sandbox.store.sf_create("Contact", {"LastName": "Ruiz"}, source="CRM_UI")
    with pytest.raises(PermanentConnectorError, match="Contact cannot be owned by a queue"):
        connector.run_action(to_queue, _target(contact, object_type="Contact"), "lbq3")


def test_sandbox_refuses_owners_as_salesforce_does(sandbox: SandboxCRM, connector: SalesforceConnector,
                                                    demo: dict[str, Any]) -> None:
    sf = connector.sf
    lead = _lead(sandbox)
    with pytest.raises(SalesforceMalformedRequest) as inactive:
        sf.Lead.update(lead, {"OwnerId": demo["inactive_user"]})
    assert inactive.value.content[0]["errorCode"] == "INACTIVE_OWNER_OR_USER"
    regular = sandbox.store.sf_create("Group", {"Name": "Everyone", "Type": "Regular"}, source="CRM_UI")
    with pytest.raises(SalesforceMalformedRequest) as not_queue:
        sf.Lead.update(lead, {"OwnerId": regular})
    assert not_queue.value.content[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    users = sf.query("SELECT Id FROM User WHERE IsActive = false")["records"]
    assert [u["Id"] for u in users] == [demo["inactive_user"]]
    queues = sf.query("SELECT Id, Name FROM Group WHERE Type = 'Queue'")["records"]
    assert [(q["Id"], q["Name"]) for q in queues] == [(demo["queue"], "Hot Leads")]
    takes = sf.query(f"SELECT SobjectType FROM QueueSobject WHERE QueueId = '{demo['queue']}'")["records"]
    assert [t["SobjectType"] for t in takes] == ["Lead"]
    sf.Lead.update(lead, {"OwnerId": demo["queue"]})
    owned = sf.query(f"SELECT Owner.Name FROM Lead WHERE Id = '{lead}'")["records"][0]
    assert owned["Owner"]["Name"] == "Hot Leads"  # the polymorphic Owner follows the id to the Group
    assert sf.Task.upsert(f"{ACTION_KEY_FIELD}/k1", {"Subject": "x"}) == 201
    assert sf.Task.upsert(f"{ACTION_KEY_FIELD}/k1", {"Subject": "y"}) == 200
    assert sf.Task.get_by_custom_id(ACTION_KEY_FIELD, "k1")["Subject"] == "y"


def test_campaign_member_once_and_refusals(sandbox: SandboxCRM, connector: SalesforceConnector,
                                           demo: dict[str, Any]) -> None:
    lead = _lead(sandbox)
    nurture = Action("crm_list", {"list_id": demo["campaign"]})
    _fault(sandbox, route=MEMBERS, method="POST", kind="lost_response", count=1)
    assert connector.run_action(nurture, _target(lead), "lbc").status == "exists"  # landed; the retry saw it
    assert connector.run_action(nurture, _target(lead), "lbc").status == "exists"
    assert [r["status"] for r in sandbox.requests.query(path=MEMBERS)] == [0, 400, 400]  # DUPLICATE_VALUE
    [member] = sandbox.store.sf_records["CampaignMember"].values()
    assert member["CampaignId"] == demo["campaign"] and member["LeadId"] == lead and member["Status"] == "Sent"

    other = _lead(sandbox)
    assert connector.run_action(nurture, _target(other), "lbc2").status == "done"
    with pytest.raises(PermanentConnectorError) as unknown:
        connector.run_action(Action("crm_list", {"list_id": "701Sb0000000zzzAAA"}), _target(lead), "lbc3")
    assert unknown.value.code == "INVALID_CROSS_REFERENCE_KEY" and "701Sb0000000zzzAAA" in str(unknown.value)


def test_sequences_are_hubspots(connector: SalesforceConnector, sandbox: SandboxCRM) -> None:
    with pytest.raises(PermanentConnectorError, match="sequences are a HubSpot action"):
        connector.run_action(Action("crm_sequence", {"sequence_id": "1", "user_id": "2", "sender_email": "a@b.c"}),
                             _target(_lead(sandbox)), "lbs")


def test_task_after_an_owner_action_goes_to_the_user_just_set(sandbox: SandboxCRM, connector: SalesforceConnector,
                                                              demo: dict[str, Any]) -> None:
    lead = _lead(sandbox)  # owned by the API user until the rule routes it
    user = demo["users"][2]
    assert connector.run_action(Action("crm_owner", {"owners": [user]}), _target(lead), "lbr").vendor_id == user
    made = connector.run_action(Action("crm_task"), _target(lead), "lbr-task")
    assert f"for owner {user}" in made.detail and _tasks(sandbox)[0]["OwnerId"] == user


LEAD_PATCH = r"/sobjects/Lead/00Q\w+$"


@pytest.mark.parametrize("kind,route,method", [("crm_owner", LEAD_PATCH, "PATCH"), ("crm_list", MEMBERS, "POST")])
def test_owner_and_campaign_are_retried_and_safe_after_a_lost_response(sandbox: SandboxCRM,
                                                                       connector: SalesforceConnector,
                                                                       demo: dict[str, Any], kind: str, route: str,
                                                                       method: str) -> None:
    user = demo["users"][1]
    params: dict[str, Any] = {"owners": [user]} if kind == "crm_owner" else {"list_id": demo["campaign"]}

    def landed(lead: str) -> bool:
        if kind == "crm_owner":
            return sandbox.store.sf_get("Lead", lead)["OwnerId"] == user
        return [m["LeadId"] for m in sandbox.store.sf_records["CampaignMember"].values()].count(lead) == 1

    retried = _lead(sandbox)
    _fault(sandbox, route=route, method=method, status=429, count=1)
    _fault(sandbox, route=route, method=method, status=503, count=1)
    assert connector.run_action(Action(kind, params), _target(retried), "lbx").status == "done"
    assert landed(retried)
    assert [r["status"] for r in sandbox.requests.query(path=route) if r["method"] == method][:2] == [429, 503]

    lost = _lead(sandbox)
    once = salesforce_for(sandbox, retry_attempts=1)
    _fault(sandbox, route=route, method=method, kind="lost_response", count=1)
    with pytest.raises(TransientConnectorError):
        once.run_action(Action(kind, params), _target(lost), "lby")
    assert landed(lost)
    assert once.run_action(Action(kind, params), _target(lost), "lby").status == "exists"
    assert landed(lost)


def test_a_contacts_owner_rotates_over_active_users(sandbox: SandboxCRM, connector: SalesforceConnector,
                                                    demo: dict[str, Any]) -> None:
    contact = sandbox.store.sf_create("Contact", {"LastName": "Ruiz"}, source="CRM_UI")
    rotate = Action("crm_owner", {"owners": [demo["inactive_user"], "005Sb0000000zzzAAA", demo["users"][2]]})
    result = connector.run_action(rotate, _target(contact, object_type="Contact"), "lbc")
    assert result.vendor_id == demo["users"][2] and "skipped: inactive or deleted" in result.detail
    assert sandbox.store.sf_get("Contact", contact)["OwnerId"] == demo["users"][2]


def test_task_before_crm_setup_says_to_run_it(sandbox: SandboxCRM) -> None:
    bare = salesforce_for(sandbox, sleep=lambda s: None)  # Task.Leadbridge_Action_Key__c not provisioned
    with pytest.raises(PermanentConnectorError, match="crm setup"):
        bare.run_action(Action("crm_task"), _target(_lead(sandbox)), "lbt")
    assert _tasks(sandbox) == []
