"""HubSpot rule actions: a task for the contact's owner, owner rotation, a static list, a sequence enrolment.

Each is idempotent per key. A task carries its key in its notes and a retry searches for it before creating
(HubSpot's search index lags writes by a few seconds, so a retry sooner than that can still miss it); the owner,
list and sequence actions look at what the contact already has. Every call goes through the connector's call
policy (shared rate-limit bucket); the whole action is the retry unit (connectors/action_support.py).
"""

from __future__ import annotations

import json
from typing import Any

from connectors import action_support as support
from connectors.base import AuthConnectorError, PermanentConnectorError
from core.actions import Action, ActionResult, ActionTarget

VENDOR = "hubspot"
TASK_TO_CONTACT = 204  # HUBSPOT_DEFINED association type task -> contact
SUBJECT_MAX = 255
TASK_SEARCH_PROPERTIES = ["hs_task_subject", "hubspot_owner_id", "hs_timestamp", "hs_task_status"]
SEQUENCES_PATH = "/automation/v4/sequences"
# Seconds a retry waits after an answer that may have come after the commit (a dropped connection, a 5xx), per
# kind: a task is found again by search, whose index trails writes by a few seconds; the rest read the record.
RETRY_WAIT_AFTER_UNCERTAIN = {"crm_task": 10.0}


def run_action(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """Carry out one crm_task / crm_owner / crm_list / crm_sequence action on a HubSpot contact, once per key."""
    return support.run_with_retries(connector, HANDLERS, action, target, key)


def _permanent(message: str, status: int | None = None) -> PermanentConnectorError:
    return PermanentConnectorError(message, vendor=VENDOR, status=status)


# ---------------------------------------------------------------------------------------------- crm_task
def create_task(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """A NOT_STARTED task on the contact for its owner, due in due_days; an earlier attempt's task is reused."""
    contact_id = support.record_of(target, VENDOR)
    due = support.due_at(action, VENDOR)
    subject = support.task_subject(action, target, SUBJECT_MAX)
    priority = support.priority(action, VENDOR).upper()
    existing = find_task(connector, key)
    if existing is not None:
        return ActionResult("exists", f"task {existing} already made for this crossing", existing)
    properties = {"hs_timestamp": str(int(due.timestamp() * 1000)), "hs_task_subject": subject,
                  "hs_task_body": support.task_notes(target, key), "hs_task_priority": priority,
                  "hs_task_status": "NOT_STARTED", "hs_task_type": "TODO"}
    owner = str(target.owner_id or "") or current_owner(connector, contact_id)
    if owner:
        properties["hubspot_owner_id"] = owner
    body = {"properties": properties, "associations": [
        {"to": {"id": contact_id},
         "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}]}]}
    created = connector._call("create task", lambda: connector._objects.basic_api.create("tasks", body),
                              retry=False)
    owner = f" for owner {owner}" if owner else ""
    return ActionResult("done", f"task {created.id}{owner}, due {due.date().isoformat()}, priority {priority}",
                        str(created.id))


def find_task(connector: Any, key: str) -> str | None:
    """The id of the task an earlier attempt made for `key` (its notes name the key), if any."""
    body = {"filterGroups": [{"filters": [{"propertyName": "hs_task_body", "operator": "CONTAINS_TOKEN",
                                           "value": key}]}],
            "properties": TASK_SEARCH_PROPERTIES, "limit": 1, "sorts": ["hs_object_id"]}
    found = connector._call("search tasks", lambda: connector._objects.search_api.do_search("tasks", body),
                            retry=False)
    results = found.results or []
    return str(results[0].id) if results else None


# ---------------------------------------------------------------------------------------------- crm_owner
def set_owner(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """Round robin over the rule's active owners (archived or deleted ones skipped): set hubspot_owner_id."""
    contact_id = support.record_of(target, VENDOR)
    if action.params.get("queue"):
        raise _permanent("crm_owner: queues are Salesforce's; HubSpot rotates owners (give owners)")
    owners = support.owner_ids(action, VENDOR)
    if not owners:
        raise _permanent("crm_owner: owners (HubSpot owner ids) required")
    active = [o for o in owners if _owner_is_active(connector, o)]
    skipped = [o for o in owners if o not in active]
    if not active:
        raise _permanent(f"crm_owner: none of the owners {', '.join(owners)} is an active HubSpot owner "
                         "(archived or deleted)", 404)
    chosen = support.round_robin(active, target.turn)
    note = f" ({', '.join(skipped)} skipped: archived or deleted)" if skipped else ""
    if current_owner(connector, contact_id) == chosen:
        return ActionResult("exists", f"contact {contact_id} already owned by {chosen}{note}", chosen)
    connector._call("set contact owner", lambda: connector._contacts.basic_api.update(
        contact_id, {"properties": {"hubspot_owner_id": chosen}}), retry=False)
    return ActionResult("done", f"owner of contact {contact_id} set to {chosen} (turn {target.turn} of "
                                f"{len(active)} active){note}", chosen)


def current_owner(connector: Any, contact_id: str) -> str:
    """The contact's hubspot_owner_id as HubSpot holds it now ("" when it has none)."""
    current = connector._call("read contact owner", lambda: connector._contacts.basic_api.get_by_id(
        contact_id, properties=["hubspot_owner_id"]), retry=False)
    return str((current.properties or {}).get("hubspot_owner_id") or "")


def _owner_is_active(connector: Any, owner_id: str) -> bool:
    """GET /crm/v3/owners/{id}: an archived or deleted owner answers 404 (archived=false)."""
    try:
        connector._call(f"read owner {owner_id}", lambda: connector.api.crm.owners.owners_api.get_by_id(
            owner_id, id_property="id", archived=False), retry=False)
    except PermanentConnectorError as exc:
        if exc.status == 404:
            return False
        raise
    return True


# ---------------------------------------------------------------------------------------------- crm_list
def add_to_list(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """Add the contact to a static (MANUAL or SNAPSHOT) list; a member already is reported as such."""
    contact_id = support.record_of(target, VENDOR)
    list_id = str(action.params.get("list_id") or "").strip()
    if not list_id:
        raise _permanent("crm_list: list_id required")
    raw = connector._call(f"add to list {list_id}", lambda: connector.api.crm.lists.memberships_api.add(
        list_id, [contact_id], _preload_content=False), retry=False)
    try:
        answer = json.loads(raw.data or b"{}")
    except ValueError:
        answer = {}  # the membership is what counts; a retry would report it as already there
    finally:
        raw.release_conn()
    # The SDK's model (HubSpot's OpenAPI spec) names the added ids recordsIdsAdded, the API reference
    # recordIdsAdded: read either.
    added = answer.get("recordIdsAdded") or answer.get("recordsIdsAdded") or []
    if contact_id in [str(i) for i in answer.get("recordIdsMissing") or []]:
        raise _permanent(f"crm_list: HubSpot has no contact {contact_id} to add to list {list_id}", 404)
    if contact_id in [str(i) for i in added]:
        return ActionResult("done", f"contact {contact_id} added to list {list_id}", list_id)
    return ActionResult("exists", f"contact {contact_id} already in list {list_id}", list_id)


# ---------------------------------------------------------------------------------------------- crm_sequence
def enroll(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """Enrol the contact in a sequence as `user_id` sending from `sender_email` (a seat and the sequence scopes
    needed); a contact already in this sequence is "exists", in another one a clear refusal."""
    contact_id = support.record_of(target, VENDOR)
    sequence_id, user_id = str(action.params["sequence_id"]), str(action.params["user_id"])
    body = {"sequenceId": sequence_id, "contactId": contact_id, "senderEmail": str(action.params["sender_email"])}
    try:
        made = connector.api_json(f"enrol contact {contact_id} in sequence {sequence_id}", "POST",
                                  f"{SEQUENCES_PATH}/enrollments", qs={"userId": user_id}, body=body, retry=False)
    except AuthConnectorError as exc:
        raise AuthConnectorError(f"{exc} (sequences need a Sales or Service Hub seat for user {user_id} and the "
                                 "automation.sequences.read and automation.sequences.enrollments.write scopes)",
                                 vendor=VENDOR, status=exc.status, code=exc.code,
                                 vendor_message=exc.vendor_message) from exc
    except PermanentConnectorError as exc:
        if exc.status != 400:
            raise
        current = _enrolment(connector, contact_id, user_id)
        if current is None:
            raise
        if str(current.get("sequenceId")) == sequence_id:
            return ActionResult("exists", f"contact {contact_id} already enrolled in sequence {sequence_id}",
                                str(current.get("id") or ""))
        raise _permanent(f"crm_sequence: contact {contact_id} is already enrolled in another sequence "
                         f"({current.get('sequenceId')}); HubSpot allows one at a time", 400) from exc
    return ActionResult("done", f"contact {contact_id} enrolled in sequence {sequence_id} by user {user_id}",
                        str(made.get("id") or ""))


def _enrolment(connector: Any, contact_id: str, user_id: str) -> dict[str, Any] | None:
    """The contact's active enrolment (None when it is in no sequence)."""
    try:
        return dict(connector.api_json(f"read enrolment of contact {contact_id}", "GET",
                                       f"{SEQUENCES_PATH}/enrollments/contact/{contact_id}", qs={"userId": user_id},
                                       retry=False))
    except PermanentConnectorError as exc:
        if exc.status == 404:
            return None
        raise


HANDLERS: dict[str, support.Handler] = {"crm_task": create_task, "crm_owner": set_owner, "crm_list": add_to_list,
                                        "crm_sequence": enroll}
