"""HubSpot rule actions through hubspot-api-client against the sandbox CRM over HTTP: once per key, retried,
safe after a lost response, and refused with a clear error for archived owners, dynamic lists, missing seats
and scopes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hubspot import HubSpot

from connectors.base import AuthConnectorError, PermanentConnectorError, TransientConnectorError
from connectors.hubspot.client import HubSpotConnector
from core.actions import Action, ActionTarget
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from sandbox.crm_actions import HUBSPOT_DEMO, demo_rule_actions
from sandbox.store import SandboxStore

from ..conftest import admin

TASKS = r"^/crm/v3/objects/tasks$"
ENROL = r"^/automation/v4/sequences/enrollments$"
SEQUENCE = {"sequence_id": HUBSPOT_DEMO["sequence"], "user_id": HUBSPOT_DEMO["sequence_user"],
            "sender_email": HUBSPOT_DEMO["sender_email"]}


@pytest.fixture
def connector(sandbox: SandboxCRM) -> HubSpotConnector:
    """The HubSpot connector with the default retry budget, sleeping not at all between attempts."""
    return HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url, sleep=lambda s: None)


def _contact(crm: SandboxCRM, owner: str | None = "7001") -> str:
    props = {"email": f"ana{len(crm.store.hs_objects['contacts'])}@acme.io", "firstname": "Ana", "lastname": "Ruiz"}
    if owner:
        props["hubspot_owner_id"] = owner
    return str(crm.store.hs_create("contacts", props, source="CRM_UI")["id"])


def _target(contact_id: str, owner: str | None = "7001", turn: int = 0) -> ActionTarget:
    return ActionTarget(lead_id=1, crm="hubspot", object_type="contacts", object_id=contact_id, owner_id=owner,
                        name="Ana Ruiz", company="Acme", score=88, previous_score=61, grade="A",
                        reasons=("+12: requested a demo", "+6: viewed pricing 3x"), rule="hot leads", turn=turn)


def _fault(crm: SandboxCRM, **spec: Any) -> None:
    resp = admin(crm, "POST", "/faults", json=spec)
    assert resp.status_code == 201, resp.text


def _tasks(crm: SandboxCRM) -> list[dict[str, Any]]:
    return [t for t in crm.store.hs_objects["tasks"].values() if not t["archived"]]


def test_task_is_created_once_per_key_for_the_owner(sandbox: SandboxCRM, connector: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    before = time.time()
    first = connector.run_action(Action("crm_task", {"due_days": 2, "priority": "medium"}), _target(cid), "lbk1")
    again = connector.run_action(Action("crm_task", {"due_days": 2, "priority": "medium"}), _target(cid), "lbk1")

    assert first.status == "done" and again.status == "exists" and again.vendor_id == first.vendor_id
    [task] = _tasks(sandbox)
    props = task["properties"]
    assert task["id"] == first.vendor_id
    assert props["hs_task_subject"] == "Call Ana Ruiz: score 88 (A)"
    assert props["hs_task_status"] == "NOT_STARTED" and props["hs_task_priority"] == "MEDIUM"
    assert props["hubspot_owner_id"] == "7001"
    assert "+12: requested a demo" in props["hs_task_body"] and "lbk1" in props["hs_task_body"]
    due = int(props["hs_timestamp"]) / 1000
    assert before + 2 * 86400 - 5 < due < time.time() + 2 * 86400 + 5
    assert sandbox.store.hs_associations("tasks", task["id"], "contacts") == [(cid, [204])]
    # A different crossing (another key) is another task.
    assert connector.run_action(Action("crm_task"), _target(cid), "lbk2").status == "done"
    assert len(_tasks(sandbox)) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_task_is_retried_on_429_and_5xx_and_lands_once(sandbox: SandboxCRM, connector: HubSpotConnector,
                                                      status: int) -> None:
    cid = _contact(sandbox)
    _fault(sandbox, route=TASKS, method="POST", status=status, count=2, retry_after=1)
    result = connector.run_action(Action("crm_task"), _target(cid), "lbk-retry")
    assert result.status == "done"
    assert len(_tasks(sandbox)) == 1
    statuses = [r["status"] for r in sandbox.requests.query(path=TASKS)]
    assert statuses == [status, status, 201]


def test_lost_response_after_the_commit_makes_one_task(sandbox: SandboxCRM) -> None:
    cid = _contact(sandbox)
    once = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url, retry_attempts=1)  # as a worker task
    _fault(sandbox, route=TASKS, method="POST", kind="lost_response", count=1)
    with pytest.raises(TransientConnectorError):
        once.run_action(Action("crm_task"), _target(cid), "lbk-lost")
    assert len(_tasks(sandbox)) == 1  # HubSpot committed it; the answer never came
    retried = once.run_action(Action("crm_task"), _target(cid), "lbk-lost")  # Celery's retry, or a replay
    assert retried.status == "exists" and retried.vendor_id == _tasks(sandbox)[0]["id"]
    assert len(_tasks(sandbox)) == 1


def test_lost_response_inside_the_connector_retry_makes_one_task(sandbox: SandboxCRM,
                                                                connector: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    _fault(sandbox, route=TASKS, method="POST", kind="lost_response", count=1)
    assert connector.run_action(Action("crm_task"), _target(cid), "lbk-lost2").status == "exists"
    assert len(_tasks(sandbox)) == 1


def test_task_without_the_contact_scope_is_a_clear_auth_error(sandbox: SandboxCRM,
                                                              connector: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    sandbox.config.hubspot_revoked_scopes.add("crm.objects.contacts.write")
    with pytest.raises(AuthConnectorError) as info:
        connector.run_action(Action("crm_task"), _target(cid), "lbk-scope")
    assert info.value.status == 403 and info.value.code == "MISSING_SCOPES"
    assert len(sandbox.requests.query(path=TASKS)) == 1 and _tasks(sandbox) == []  # not retried, nothing made


def test_owner_round_robin_skips_archived_owners(sandbox: SandboxCRM, connector: HubSpotConnector) -> None:
    owners = Action("crm_owner", {"owners": ["7004", "7001", "7002"]})  # 7004 is archived
    chosen = []
    for turn in range(3):
        cid = _contact(sandbox, owner=None)
        result = connector.run_action(owners, _target(cid, owner=None, turn=turn), f"lbo{turn}")
        assert result.status == "done" and "7004 skipped" in result.detail
        assert sandbox.store.hs_get("contacts", cid)["properties"]["hubspot_owner_id"] == result.vendor_id
        chosen.append(result.vendor_id)
        # The same crossing again finds the owner set.
        assert connector.run_action(owners, _target(cid, owner=None, turn=turn), f"lbo{turn}").status == "exists"
    assert chosen == ["7001", "7002", "7001"]


def test_owner_rotation_with_only_archived_or_deleted_owners_names_them(sandbox: SandboxCRM,
                                                                        connector: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    with pytest.raises(PermanentConnectorError) as info:
        connector.run_action(Action("crm_owner", {"owners": ["7004", "9999"]}), _target(cid), "lbo")
    assert "7004" in str(info.value) and "9999" in str(info.value) and "archived or deleted" in str(info.value)
    assert sandbox.store.hs_get("contacts", cid)["properties"]["hubspot_owner_id"] == "7001"  # untouched


def test_static_list_add_once_and_refusals(sandbox: SandboxCRM, connector: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    nurture = Action("crm_list", {"list_id": HUBSPOT_DEMO["nurture_list"]})
    assert connector.run_action(nurture, _target(cid), "lbl").status == "done"
    assert connector.run_action(nurture, _target(cid), "lbl").status == "exists"
    assert list(sandbox.store.hs_actions.members[HUBSPOT_DEMO["nurture_list"]]) == [cid]

    with pytest.raises(PermanentConnectorError) as dynamic:
        connector.run_action(Action("crm_list", {"list_id": HUBSPOT_DEMO["dynamic_list"]}), _target(cid), "lbd")
    assert dynamic.value.status == 400 and "DYNAMIC" in str(dynamic.value)
    with pytest.raises(PermanentConnectorError) as unknown:
        connector.run_action(Action("crm_list", {"list_id": "424242"}), _target(cid), "lbu")
    assert unknown.value.status == 404 and "424242" in str(unknown.value)


def test_sequence_enrolment_once_and_after_a_lost_response(sandbox: SandboxCRM, connector: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    _fault(sandbox, route=ENROL, method="POST", kind="lost_response", count=1)
    result = connector.run_action(Action("crm_sequence", SEQUENCE), _target(cid), "lbs")
    assert result.status == "exists"  # the first attempt enrolled; its retry read the enrolment back
    assert connector.run_action(Action("crm_sequence", SEQUENCE), _target(cid), "lbs").status == "exists"
    enrolment = sandbox.store.hs_actions.enrollments[cid]
    assert enrolment["sequenceId"] == HUBSPOT_DEMO["sequence"] and result.vendor_id == enrolment["id"]
    assert [r["status"] for r in sandbox.requests.query(path=ENROL)] == [0, 400, 400]  # dropped, then "enrolled"

    other = _contact(sandbox)
    assert connector.run_action(Action("crm_sequence", SEQUENCE), _target(other), "lbs2").status == "done"


def test_sequence_refusals_name_the_seat_scope_and_inbox(sandbox: SandboxCRM, connector: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    with pytest.raises(AuthConnectorError) as seat:
        connector.run_action(Action("crm_sequence", {**SEQUENCE, "user_id": "3003"}), _target(cid), "lbs")
    assert seat.value.status == 403 and "seat" in str(seat.value)
    with pytest.raises(PermanentConnectorError) as inbox:
        connector.run_action(Action("crm_sequence", {**SEQUENCE, "sender_email": "ben.ortiz@sandbox.invalid"}),
                             _target(cid), "lbs")
    assert inbox.value.status == 400 and "connected inbox" in str(inbox.value)
    sandbox.config.hubspot_revoked_scopes.add("automation.sequences.enrollments.write")
    with pytest.raises(AuthConnectorError) as scope:
        connector.run_action(Action("crm_sequence", SEQUENCE), _target(cid), "lbs")
    assert scope.value.code == "MISSING_SCOPES" and "automation.sequences.enrollments.write" in str(scope.value)
    assert cid not in sandbox.store.hs_actions.enrollments


def test_a_salesforce_lead_is_not_a_hubspot_record(connector: HubSpotConnector) -> None:
    target = ActionTarget(1, "salesforce", "Lead", "00QSb0000000001AAA", None, "X", None, 80, None, "B")
    with pytest.raises(PermanentConnectorError, match="no hubspot record"):
        connector.run_action(Action("crm_task"), target, "lbx")


def test_sandbox_error_shapes_of_owners_lists_and_sequences(sandbox: SandboxCRM) -> None:
    base, auth = sandbox.base_url, {"Authorization": f"Bearer {DEFAULT_HUBSPOT_TOKEN}"}
    archived = requests.get(f"{base}/crm/v3/owners/7004", headers=auth, timeout=10)
    assert archived.status_code == 404 and archived.json()["category"] == "OBJECT_NOT_FOUND"
    shown = requests.get(f"{base}/crm/v3/owners/7004", params={"archived": "true"}, headers=auth, timeout=10)
    assert shown.status_code == 200 and shown.json()["archived"] is True
    listed = requests.get(f"{base}/crm/v3/owners/", headers=auth, timeout=10).json()["results"]
    assert [o["id"] for o in listed] == HUBSPOT_DEMO["owners"]

    created = requests.post(f"{base}/crm/v3/lists/", json={"name": "Webinar", "objectTypeId": "0-1",
                                                           "processingType": "MANUAL"}, headers=auth, timeout=10)
    assert created.status_code == 200 and created.json()["list"]["processingType"] == "MANUAL"
    sdk = HubSpot(access_token=DEFAULT_HUBSPOT_TOKEN, host=base)  # the SDK's own models read the answers
    cid = _contact(sandbox)
    added = sdk.crm.lists.memberships_api.add(created.json()["list"]["listId"], [cid, "987654"])
    assert added.records_ids_added == [cid] and added.record_ids_missing == ["987654"]
    owner = sdk.crm.owners.owners_api.get_by_id("7001", id_property="id", archived=False)
    assert owner.email == HUBSPOT_DEMO["sender_email"] and owner.user_id == 3001 and owner.archived is False
    bad = requests.put(f"{base}/crm/v3/lists/{HUBSPOT_DEMO['dynamic_list']}/memberships/add", json=["1"],
                       headers=auth, timeout=10)
    assert bad.status_code == 400 and bad.json()["category"] == "VALIDATION_ERROR"

    sandbox.config.hubspot_revoked_scopes.add("automation.sequences.read")
    denied = requests.get(f"{base}/automation/v4/sequences", params={"userId": "3001"}, headers=auth, timeout=10)
    body = denied.json()
    assert denied.status_code == 403 and body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredGranularScopes"] == ["automation.sequences.read"]


def test_task_after_an_owner_action_goes_to_the_owner_just_set(sandbox: SandboxCRM,
                                                               connector: HubSpotConnector) -> None:
    cid = _contact(sandbox, owner=None)  # a hot lead nobody owns yet: the rule routes it, then tasks its owner
    routed = connector.run_action(Action("crm_owner", {"owners": ["7002"]}), _target(cid, owner=None), "lbr")
    made = connector.run_action(Action("crm_task"), _target(cid, owner=None), "lbr-task")
    assert routed.vendor_id == "7002" and "for owner 7002" in made.detail
    assert _tasks(sandbox)[0]["properties"]["hubspot_owner_id"] == "7002"


def test_sandbox_admin_takes_scopes_and_names_the_demo_records(sandbox: SandboxCRM,
                                                               connector: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    assert admin(sandbox, "PUT", "/hubspot/scopes", json={"revoked": ["no.such.scope"]}).status_code == 400
    taken = admin(sandbox, "PUT", "/hubspot/scopes", json={"revoked": ["crm.lists.write"]})
    assert taken.status_code == 200 and taken.json() == {"revoked": ["crm.lists.write"]}
    nurture = Action("crm_list", {"list_id": HUBSPOT_DEMO["nurture_list"]})
    with pytest.raises(AuthConnectorError):
        connector.run_action(nurture, _target(cid), "lbl")
    admin(sandbox, "PUT", "/hubspot/scopes", json={"revoked": []})
    assert connector.run_action(nurture, _target(cid), "lbl").status == "done"

    info = admin(sandbox, "GET", "/info").json()
    assert info["actions"]["hubspot"]["sequence"] == HUBSPOT_DEMO["sequence"]
    assert info["actions"]["salesforce"]["queue"] == sandbox.store.sf_demo["queue"]
    rules = demo_rule_actions(info["actions"])
    hot = [Action.from_json(a) for a in rules["hot"]]
    assert [(a.kind, a.crm) for a in hot] == [("crm_owner", "hubspot"), ("crm_task", "hubspot"),
                                             ("crm_owner", "salesforce"), ("crm_task", "salesforce"),
                                             ("crm_sequence", "hubspot"), ("slack_owner_dm", None)]
    assert hot[4].params == {"sequence_id": HUBSPOT_DEMO["sequence"], "user_id": HUBSPOT_DEMO["sequence_user"],
                             "sender_email": HUBSPOT_DEMO["sender_email"]}
    assert connector.run_action(hot[4], _target(cid), "lb-demo-seq").status == "done"  # the demo ids enrol
    assert hot[2].params["owners"] == sandbox.store.sf_demo["users"]
    warm = [Action.from_json(a) for a in rules["warm"]]
    assert [(a.kind, a.params["list_id"]) for a in warm] == [("crm_list", HUBSPOT_DEMO["nurture_list"]),
                                                            ("crm_list", sandbox.store.sf_demo["campaign"])]


def test_task_for_an_archived_owner_is_refused_clearly(sandbox: SandboxCRM, connector: HubSpotConnector) -> None:
    cid = _contact(sandbox, owner="7004")  # the contact's owner left (archived) since it was assigned
    with pytest.raises(PermanentConnectorError) as info:
        connector.run_action(Action("crm_task"), _target(cid, owner="7004"), "lbk-gone")
    assert info.value.status == 400 and "7004 is not a valid owner id" in str(info.value)
    assert _tasks(sandbox) == [] and len(sandbox.requests.query(path=TASKS)) == 1  # not retried


def test_saved_sandbox_keeps_owners_lists_enrolments_and_routing_records(tmp_path: Path,
                                                                         connector: HubSpotConnector,
                                                                         sandbox: SandboxCRM) -> None:
    cid = _contact(sandbox)
    connector.run_action(Action("crm_list", {"list_id": HUBSPOT_DEMO["nurture_list"]}), _target(cid), "lbl")
    connector.run_action(Action("crm_sequence", SEQUENCE), _target(cid), "lbs")
    sandbox.store.save(tmp_path / "crm.json")
    restored = SandboxStore()
    assert restored.load(tmp_path / "crm.json")
    assert list(restored.hs_actions.members[HUBSPOT_DEMO["nurture_list"]]) == [cid]
    assert restored.hs_actions.enrollments[cid]["sequenceId"] == HUBSPOT_DEMO["sequence"]
    assert restored.hs_actions.owners["7004"]["archived"] is True
    assert restored.sf_demo == sandbox.store.sf_demo


OTHER_ACTIONS = [
    ("crm_owner", {"owners": ["7002"]}, r"^/crm/v3/objects/contacts/\d+$", "PATCH"),
    ("crm_list", {"list_id": HUBSPOT_DEMO["nurture_list"]}, r"/memberships/add$", "PUT"),
    ("crm_sequence", SEQUENCE, ENROL, "POST"),
]


def _landed(crm: SandboxCRM, kind: str, cid: str) -> bool:
    """Whether the action's one effect is in the CRM."""
    if kind == "crm_owner":
        return crm.store.hs_get("contacts", cid)["properties"]["hubspot_owner_id"] == "7002"
    if kind == "crm_list":
        return list(crm.store.hs_actions.members[HUBSPOT_DEMO["nurture_list"]]) == [cid]
    return crm.store.hs_actions.enrollments[cid]["sequenceId"] == HUBSPOT_DEMO["sequence"]


@pytest.mark.parametrize("kind,params,route,method", OTHER_ACTIONS)
def test_owner_list_and_sequence_are_retried_on_429_and_5xx(sandbox: SandboxCRM, connector: HubSpotConnector,
                                                           kind: str, params: dict[str, Any], route: str,
                                                           method: str) -> None:
    cid = _contact(sandbox)
    _fault(sandbox, route=route, method=method, status=429, count=1, retry_after=1)
    _fault(sandbox, route=route, method=method, status=502, count=1)
    assert connector.run_action(Action(kind, params), _target(cid), "lbx").status == "done"
    assert _landed(sandbox, kind, cid)
    assert [r["status"] for r in sandbox.requests.query(path=route) if r["method"] == method] == [429, 502, 200]


@pytest.mark.parametrize("kind,params,route,method", OTHER_ACTIONS)
def test_owner_list_and_sequence_after_a_lost_response(sandbox: SandboxCRM, kind: str, params: dict[str, Any],
                                                      route: str, method: str) -> None:
    cid = _contact(sandbox)
    once = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url, retry_attempts=1)
    _fault(sandbox, route=route, method=method, kind="lost_response", count=1)
    with pytest.raises(TransientConnectorError):
        once.run_action(Action(kind, params), _target(cid), "lbx")
    assert _landed(sandbox, kind, cid)  # the CRM made the change; the answer was lost
    assert once.run_action(Action(kind, params), _target(cid), "lbx").status == "exists"
    assert _landed(sandbox, kind, cid)
