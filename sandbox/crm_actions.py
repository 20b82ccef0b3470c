"""What the sandbox CRM keeps for rule actions (issue 16): HubSpot owners, users, static lists and sequences, the
Salesforce routing rules (inactive owners, queues, campaign members), and the demo records sandbox mode shows.

The HubSpot state lives beside the CRM objects in the store (`store.hs_actions`); the Salesforce objects (User,
Group, QueueSobject, Campaign, CampaignMember) are ordinary sObjects, checked here the way Salesforce checks them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.ids import iso_ms

# Demo ids sandbox mode's default rules name (also shown by GET /_sandbox/info under "actions").
HUBSPOT_DEMO = {
    "owners": ["7001", "7002", "7003"],  # active owners, round robin
    "archived_owner": "7004",
    "nurture_list": "1001",  # a MANUAL (static) list
    "dynamic_list": "1002",
    "sequence": "5001",
    "sequence_user": "3001",  # a user with a Sales seat ...
    "sender_email": "ava.hart@sandbox.invalid",  # ... and this connected inbox
}
HUBSPOT_SCOPES = frozenset({
    "crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.companies.read",
    "crm.objects.companies.write", "crm.objects.deals.read", "crm.objects.deals.write", "crm.objects.owners.read",
    "crm.lists.read", "crm.lists.write", "crm.schemas.contacts.read", "crm.schemas.contacts.write",
    "automation.sequences.read", "automation.sequences.enrollments.write",
})
_DEMO_STAMP = "2024-01-01T00:00:00.000Z"


@dataclass
class HubSpotActionState:
    """HubSpot owners, users (seats, connected inboxes), lists with their members, sequences and enrolments."""

    owners: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # userId -> {seat, inboxes}
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, int]] = field(default_factory=dict)  # listId -> {recordId: added at (ms)}
    sequences: dict[str, dict[str, Any]] = field(default_factory=dict)
    enrollments: dict[str, dict[str, Any]] = field(default_factory=dict)  # contactId -> its active enrolment
    counter: int = 900_000

    def next_id(self) -> str:
        """A fresh numeric id (lists, enrolments)."""
        self.counter += 1
        return str(self.counter)

    def add_owner(self, owner_id: str, email: str, first: str, last: str, user_id: int, *,
                  archived: bool = False) -> dict[str, Any]:
        """Add a CRM owner (HubSpot's PublicOwner shape)."""
        owner = {"id": owner_id, "email": email, "firstName": first, "lastName": last, "userId": user_id,
                 "userIdIncludingInactive": user_id, "type": "PERSON", "createdAt": _DEMO_STAMP,
                 "updatedAt": _DEMO_STAMP, "archived": archived, "teams": []}
        self.owners[owner_id] = owner
        return owner

    def add_list(self, name: str, processing_type: str, list_id: str | None = None) -> dict[str, Any]:
        """Add a contact list (MANUAL, SNAPSHOT or DYNAMIC), HubSpot's PublicObjectList shape."""
        list_id = list_id or self.next_id()
        stamp = iso_ms()
        self.lists[list_id] = {"listId": list_id, "name": name, "objectTypeId": "0-1",
                               "processingType": processing_type, "processingStatus": "COMPLETE", "listVersion": 1,
                               "createdAt": stamp, "updatedAt": stamp, "filtersUpdatedAt": stamp,
                               "createdById": "3001", "updatedById": "3001", "size": 0}
        self.members[list_id] = {}
        return self.lists[list_id]

    def shaped_list(self, list_id: str) -> dict[str, Any]:
        """A list as the API shows it (its size counted now)."""
        return {**self.lists[list_id], "size": len(self.members.get(list_id, {}))}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the store's save file."""
        return {"owners": self.owners, "users": self.users, "lists": self.lists, "members": self.members,
                "sequences": self.sequences, "enrollments": self.enrollments, "counter": self.counter}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> HubSpotActionState:
        """The state a save file holds (a save from before issue 16: the demo state)."""
        if not data:
            return demo_hubspot_state()
        return cls(**{k: data[k] for k in ("owners", "users", "lists", "members", "sequences", "enrollments",
                                           "counter") if k in data})


def demo_hubspot_state() -> HubSpotActionState:
    """Owners (one archived), seated users with inboxes, a static and a dynamic list, a sequence."""
    state = HubSpotActionState()
    people = [("7001", "Ava", "Hart", 3001), ("7002", "Ben", "Ortiz", 3002), ("7003", "Cleo", "Park", 3003)]
    for owner_id, first, last, user_id in people:
        state.add_owner(owner_id, f"{first.lower()}.{last.lower()}@sandbox.invalid", first, last, user_id)
    state.add_owner("7004", "dana.gone@sandbox.invalid", "Dana", "Gone", 3004, archived=True)
    # Sequences need a Sales or Service Hub seat and a connected inbox; Cleo has neither.
    state.users = {"3001": {"seat": "sales", "inboxes": ["ava.hart@sandbox.invalid"]},
                   "3002": {"seat": "sales", "inboxes": ["ben.ortiz@sandbox.invalid"]},
                   "3003": {"seat": None, "inboxes": []}}
    state.add_list("Nurture: warm leads", "MANUAL", HUBSPOT_DEMO["nurture_list"])
    state.add_list("Customers (filter)", "DYNAMIC", HUBSPOT_DEMO["dynamic_list"])
    state.sequences[HUBSPOT_DEMO["sequence"]] = {
        "id": HUBSPOT_DEMO["sequence"], "name": "Hot lead follow-up", "userId": "3001", "folderId": "1",
        "createdAt": _DEMO_STAMP, "updatedAt": _DEMO_STAMP}
    return state


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------- Salesforce
SF_DEMO_USERS = (("Ava", "Hart"), ("Ben", "Ortiz"), ("Cleo", "Park"))
SF_DEMO_INACTIVE_USER = ("Dana", "Gone")
SF_DEMO_QUEUE = "Hot Leads"
SF_DEMO_CAMPAIGN = "Nurture: warm leads"


def seed_salesforce(store: Any) -> dict[str, Any]:
    """Users (one inactive), a Lead queue and a nurture campaign; returns their ids (for sandbox mode's rules)."""
    users = [store.sf_create("User", {"Email": f"{f.lower()}.{last.lower()}@sandbox.invalid",
                                      "Username": f"{f.lower()}.{last.lower()}@sandbox.leadbridge"}, source="CRM_UI")
             for f, last in SF_DEMO_USERS]
    for rid, (first, last) in zip(users, SF_DEMO_USERS, strict=True):
        store.sf_records["User"][rid]["Name"] = f"{first} {last}"
    first, last = SF_DEMO_INACTIVE_USER
    inactive = store.sf_create("User", {"Email": f"{first.lower()}@sandbox.invalid", "IsActive": False,
                                        "Username": f"{first.lower()}.{last.lower()}@sandbox.leadbridge"},
                               source="CRM_UI")
    store.sf_records["User"][inactive]["Name"] = f"{first} {last}"
    queue = store.sf_create("Group", {"Name": SF_DEMO_QUEUE, "DeveloperName": "Hot_Leads", "Type": "Queue"},
                            source="CRM_UI")
    store.sf_create("QueueSobject", {"QueueId": queue, "SobjectType": "Lead"}, source="CRM_UI")
    campaign = store.sf_create("Campaign", {"Name": SF_DEMO_CAMPAIGN, "IsActive": True, "Status": "In Progress",
                                            "Type": "Email"}, source="CRM_UI")
    return {"users": users, "inactive_user": inactive, "queue": queue, "campaign": campaign}


class SalesforceRoutingError(ValueError):
    """A change Salesforce refuses for its owner or membership: (errorCode, message, fields)."""

    def __init__(self, code: str, message: str, fields: list[str]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields


def check_salesforce_routing(records: Mapping[str, Mapping[str, Mapping[str, Any]]], sobject: str,
                             values: Mapping[str, Any], rid: str | None) -> None:
    """Refuse what Salesforce refuses: an inactive owner, a queue that does not take the object, a second
    campaign membership of one person (SalesforceRoutingError)."""
    owner = values.get("OwnerId")
    if isinstance(owner, str) and sobject not in ("User", "Group", "QueueSobject"):
        label = sobject.lower()
        if owner.startswith("005"):
            user = records.get("User", {}).get(owner) or {}
            if user.get("IsActive") is False:
                raise SalesforceRoutingError("INACTIVE_OWNER_OR_USER", f"operation performed with inactive user "
                                             f"[{owner}] as owner of {label}", [])
        elif owner.startswith("00G"):
            group = records.get("Group", {}).get(owner) or {}
            takes = {q.get("SobjectType") for q in records.get("QueueSobject", {}).values()
                     if q.get("QueueId") == owner}
            if group.get("Type") != "Queue" or sobject not in takes:
                raise SalesforceRoutingError("FIELD_INTEGRITY_EXCEPTION", f"Owner ID: queue {owner} cannot own "
                                             f"{sobject} records (add {sobject} to the queue's objects)", ["OwnerId"])
    if sobject == "CampaignMember" and rid is None:
        person = values.get("LeadId") or values.get("ContactId")
        if not person:
            raise SalesforceRoutingError("REQUIRED_FIELD_MISSING", "Required fields are missing: [LeadId, ContactId]",
                                         ["LeadId", "ContactId"])
        for member in records.get("CampaignMember", {}).values():
            if member.get("CampaignId") == values.get("CampaignId") and person in (member.get("LeadId"),
                                                                                 member.get("ContactId")):
                raise SalesforceRoutingError("DUPLICATE_VALUE", "Already a campaign member.", [])


_ENGAGEMENT_TYPES = ("tasks", "calls", "emails", "meetings", "notes", "contacts", "contact", "0-1")


def required_scopes(method: str, path: str) -> list[str]:
    """The private-app scopes a HubSpot request needs (all of them), as HubSpot's scope docs list them."""
    write = method.upper() not in ("GET", "HEAD")
    parts = [p for p in path.split("/") if p]
    if path.startswith("/automation/v4/sequences"):
        needed = ["automation.sequences.read"]
        if write and "enrollments" in parts:
            needed.append("automation.sequences.enrollments.write")
        return needed
    if path.startswith("/crm/v3/owners"):
        return ["crm.objects.owners.read"]
    if path.startswith("/crm/v3/lists"):
        return ["crm.lists.write" if write else "crm.lists.read"]
    if path.startswith("/crm/v3/objects/") and len(parts) >= 4:
        otype = parts[3]
        # Engagements (tasks, calls ...) use the contact scopes; a search or batch read is a read.
        reading = not write or parts[-1] in ("search", "read")
        if otype in _ENGAGEMENT_TYPES:
            return ["crm.objects.contacts.read" if reading else "crm.objects.contacts.write"]
        if otype in ("companies", "deals"):
            return [f"crm.objects.{otype}.{'read' if reading else 'write'}"]
    return []


def demo_ids(store: Any) -> dict[str, Any]:
    """The ids sandbox mode's rules name: HubSpot owners, lists, the sequence; Salesforce users, queue, campaign."""
    return {"hubspot": dict(HUBSPOT_DEMO), "salesforce": dict(store.sf_demo)}


def demo_rule_actions(ids: Mapping[str, Any], crms: Sequence[str] = ("hubspot", "salesforce")
                      ) -> dict[str, list[dict[str, Any]]]:
    """Actions (Action.to_json()) for sandbox mode's default rules, from `demo_ids` (GET /_sandbox/info's `actions`):
    a hot lead gets an owner (round robin) in each CRM it is in, a task for that owner there, HubSpot's follow-up
    sequence and a DM; a warm one joins the nurture list (HubSpot) and campaign (Salesforce). Each CRM action names
    its CRM: the ids are that CRM's."""
    hot: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    for crm in crms:
        demo = ids[crm]
        owners = list(demo["owners"] if crm == "hubspot" else demo["users"])
        nurture = demo["nurture_list"] if crm == "hubspot" else demo["campaign"]
        hot += [{"kind": "crm_owner", "params": {"crm": crm, "owners": owners}},
                {"kind": "crm_task", "params": {"crm": crm, "due_days": 1, "priority": "high"}}]
        warm.append({"kind": "crm_list", "params": {"crm": crm, "list_id": nurture}})
    if "hubspot" in crms:
        # Sequences are HubSpot's alone (the kind names its CRM, so it takes no `crm`): a user with a Sales seat
        # sends from their connected inbox.
        hubspot = ids["hubspot"]
        hot.append({"kind": "crm_sequence", "params": {"sequence_id": hubspot["sequence"],
                                                        "user_id": hubspot["sequence_user"],
                                                        "sender_email": hubspot["sender_email"]}})
    return {"hot": [*hot, {"kind": "slack_owner_dm", "params": {}}], "warm": warm}
