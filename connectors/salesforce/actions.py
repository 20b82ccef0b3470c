"""Salesforce rule actions: a Task for the record's owner, Lead/Contact owner routing (users or a queue), a
CampaignMember. Sequences are HubSpot's.

Each is idempotent per key: a Task is upserted by its External ID Leadbridge_Action_Key__c (provisioned by
`crm setup`), after a look-up by that id so a replay never reopens a task the rep has closed; the owner action
reads the owner first; a second CampaignMember is Salesforce's own DUPLICATE_VALUE. Every call goes through the
connector's call policy; the whole action is the retry unit (connectors/action_support.py).
"""

from __future__ import annotations

import re
from typing import Any

from connectors import action_support as support
from connectors.base import PermanentConnectorError
from connectors.salesforce.fields import ACTION_KEY_FIELD
from core.actions import Action, ActionResult, ActionTarget

VENDOR = "salesforce"
SUBJECT_MAX = 255
PRIORITIES = {"low": "Low", "medium": "Normal", "high": "High"}  # Task.Priority picklist values
PEOPLE = {"00Q": "Lead", "003": "Contact"}  # key prefix -> object a rule's lead can be
MEMBER_FIELD = {"Lead": "LeadId", "Contact": "ContactId"}
MEMBER_STATUS = "Sent"  # a status every campaign has
_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")

# Seconds a retry waits after an answer that may have come after the commit, per kind: none, since a task is
# upserted by its External ID and the rest read the record, which Salesforce shows at once.
RETRY_WAIT_AFTER_UNCERTAIN: dict[str, float] = {}

def run_action(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """Carry out one crm_task / crm_owner / crm_list action on a Salesforce Lead or Contact, once per key."""
    return support.run_with_retries(connector, HANDLERS, action, target, key)


def _permanent(message: str, exc: PermanentConnectorError | None = None) -> PermanentConnectorError:
    if exc is None:
        return PermanentConnectorError(message, vendor=VENDOR)
    return PermanentConnectorError(f"{message}: {exc.vendor_message}", vendor=VENDOR, status=exc.status,
                                   code=exc.code, vendor_message=exc.vendor_message)


def _person(target: ActionTarget) -> tuple[str, str]:
    """(sObject, id) of the Lead or Contact the action is about."""
    record_id = support.record_of(target, VENDOR)
    sobject = PEOPLE.get(record_id[:3])
    if sobject is None or not _ID.match(record_id):
        raise _permanent(f"{record_id} is not a Salesforce Lead (00Q) or Contact (003) id")
    return sobject, record_id


def same_id(a: Any, b: Any) -> bool:
    """Salesforce ids compared as their 15-character case-sensitive form (18-character ids add a checksum)."""
    return bool(a) and bool(b) and str(a)[:15] == str(b)[:15]


# ---------------------------------------------------------------------------------------------- crm_task
def create_task(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """A "Not Started" Task on the Lead/Contact for its owner, due in due_days, upserted by its action key."""
    sobject, record_id = _person(target)
    due = support.due_at(action, VENDOR).date()
    fields: dict[str, Any] = {"WhoId": record_id, "Subject": support.task_subject(action, target, SUBJECT_MAX),
                              "ActivityDate": due.isoformat(),
                              "Priority": PRIORITIES[support.priority(action, VENDOR)], "Status": "Not Started",
                              "Description": support.task_notes(target, key)}
    existing = find_task(connector, key)
    if existing is not None:
        return ActionResult("exists", f"task {existing} already made for this crossing", existing)
    owner = str(target.owner_id or "") or current_owner(connector, sobject, record_id)
    # A queue can own a Lead but never a Task: a queue-owned lead's task goes to the API user (Salesforce's default).
    if owner.startswith("005"):
        fields["OwnerId"] = owner
    response = connector._call("upsert task", lambda sf: sf.Task.upsert(f"{ACTION_KEY_FIELD}/{key}", fields,
                                                                         raw_response=True), retry=False)
    body = response.json() if response.content else {}
    task_id = str(body.get("id") or "")
    if response.status_code != 201:  # another attempt made it between our look-up and the upsert
        return ActionResult("exists", f"task {task_id} already made for this crossing", task_id or None)
    owner = f" for owner {fields['OwnerId']}" if "OwnerId" in fields else ""
    return ActionResult("done", f"task {task_id} on {sobject} {record_id}{owner}, due {due.isoformat()}, "
                                f"priority {fields['Priority']}", task_id)


def find_task(connector: Any, key: str) -> str | None:
    """The Id of the Task whose Leadbridge_Action_Key__c is `key` (GET by External ID), if any."""
    try:
        found = connector._call("read task by action key",
                                lambda sf: sf.Task.get_by_custom_id(ACTION_KEY_FIELD, key), retry=False)
    except PermanentConnectorError as exc:
        if exc.status == 404 and exc.code == "NOT_FOUND" and "external id field" not in exc.vendor_message.lower():
            return None
        if exc.status == 404:
            raise _permanent(f"Task.{ACTION_KEY_FIELD} is missing (run `leadbridge crm setup`)", exc) from exc
        raise
    return str(found.get("Id"))


# ---------------------------------------------------------------------------------------------- crm_owner
def set_owner(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """Set the OwnerId: a queue (Leads only), or round robin over the rule's ACTIVE users."""
    sobject, record_id = _person(target)
    queue = str(action.params.get("queue") or "").strip()
    owners = support.owner_ids(action, VENDOR)
    if queue and owners:
        raise _permanent("crm_owner: give owners (User ids) or a queue, not both")
    note, how = "", "queue"
    if queue:
        if sobject != "Lead":
            raise _permanent(f"crm_owner: a {sobject} cannot be owned by a queue (queue {queue}); give owners")
        chosen = queue
    else:
        if not owners:
            raise _permanent("crm_owner: owners (Salesforce User ids) or queue required")
        active = active_users(connector, owners)
        skipped = [o for o in owners if o not in active]
        if not active:
            raise _permanent(f"crm_owner: none of the users {', '.join(owners)} is an active Salesforce user")
        chosen = support.round_robin(active, target.turn)
        note = f" ({', '.join(skipped)} skipped: inactive or deleted)" if skipped else ""
        how = f"turn {target.turn} of {len(active)} active"
    if same_id(current_owner(connector, sobject, record_id), chosen):
        return ActionResult("exists", f"{sobject} {record_id} already owned by {chosen}{note}", chosen)
    try:
        connector._call(f"set {sobject} owner", lambda sf: getattr(sf, sobject).update(record_id,
                                                                                         {"OwnerId": chosen}),
                        retry=False)
    except PermanentConnectorError as exc:
        what = f"queue {queue} (deleted, or not a queue for {sobject} records)" if queue else f"user {chosen}"
        raise _permanent(f"crm_owner: Salesforce refused {what} as owner of {sobject} {record_id}", exc) from exc
    return ActionResult("done", f"owner of {sobject} {record_id} set to {chosen} ({how}){note}", chosen)


def current_owner(connector: Any, sobject: str, record_id: str) -> str:
    """The record's OwnerId as Salesforce holds it now (a User or, for a Lead, a queue)."""
    current = connector._call(f"read {sobject} owner", lambda sf: getattr(sf, sobject).get(record_id),
                              retry=False)
    return str(current.get("OwnerId") or "")


def active_users(connector: Any, owners: list[str]) -> list[str]:
    """The owners (in the rule's order) that are active Users (SOQL User WHERE IsActive)."""
    bad = [o for o in owners if not _ID.match(o) or not o.startswith("005")]
    if bad:
        raise _permanent(f"crm_owner: {', '.join(bad)} {'is not a User id' if len(bad) == 1 else 'are not User ids'}"
                         " (005...)")
    ids = ", ".join(f"'{o}'" for o in owners)
    page = connector._call("read users", lambda sf: sf.query(
        f"SELECT Id FROM User WHERE IsActive = true AND Id IN ({ids})"), retry=False)
    found = [str(r["Id"]) for r in page.get("records", [])]
    return [o for o in owners if any(same_id(o, f) for f in found)]


# ---------------------------------------------------------------------------------------------- crm_list
def add_to_campaign(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """Add the Lead/Contact to a campaign (CampaignMember); a member already is Salesforce's DUPLICATE_VALUE."""
    sobject, record_id = _person(target)
    campaign = str(action.params.get("list_id") or "").strip()
    if not campaign:
        raise _permanent("crm_list: list_id (a Campaign id) required")
    member = {"CampaignId": campaign, MEMBER_FIELD[sobject]: record_id, "Status": MEMBER_STATUS}
    try:
        made = connector._call("add campaign member", lambda sf: sf.CampaignMember.create(member), retry=False)
    except PermanentConnectorError as exc:
        if exc.code == "DUPLICATE_VALUE":
            return ActionResult("exists", f"{sobject} {record_id} already a member of campaign {campaign}", campaign)
        if exc.code == "INVALID_CROSS_REFERENCE_KEY":
            raise _permanent(f"crm_list: campaign {campaign} does not exist (or {sobject} {record_id} is gone)",
                             exc) from exc
        raise
    return ActionResult("done", f"{sobject} {record_id} added to campaign {campaign}", str(made.get("id") or campaign))


# ---------------------------------------------------------------------------------------------- crm_sequence
def enroll(connector: Any, action: Action, target: ActionTarget, key: str) -> ActionResult:
    """Sequences are a HubSpot action: refused with a clear message."""
    raise _permanent("crm_sequence: sequences are a HubSpot action; for Salesforce use crm_list (a campaign) or "
                     "crm_task")


HANDLERS: dict[str, support.Handler] = {"crm_task": create_task, "crm_owner": set_owner, "crm_list": add_to_campaign,
                                        "crm_sequence": enroll}
