"""Salesforce field names: the score fields leadbridge writes, and those read as lead/account attributes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# canonical score field -> the custom Lead/Contact/Account field it is written to (admins can map others)
SCORE_FIELD_NAMES = {
    "score": "Leadbridge_Score__c",
    "grade": "Leadbridge_Grade__c",
    "reasons": "Leadbridge_Reasons__c",
    "tier": "Leadbridge_Tier__c",
    "model_version": "Leadbridge_Model_Version__c",
    "scored_at": "Leadbridge_Scored_At__c",
}
GROUP_FIELD_NAME = "Leadbridge_Group__c"  # a Lead's or Contact's pilot group (never mapped elsewhere)
GROUP_OBJECTS = ("Lead", "Contact")
ACTION_KEY_FIELD = "Leadbridge_Action_Key__c"  # Task External ID: the rule action (idempotency key) that made it
WRITTEN_FIELD_NAMES = {**SCORE_FIELD_NAMES, "group": GROUP_FIELD_NAME}
MAPPED_OBJECTS = ("Lead", "Contact", "Account")  # the objects whose score fields an admin can map
# The objects whose fields an admin can map to model features (the people leadbridge scores).
FEATURE_OBJECTS = ("Lead", "Contact")
# Fields leadbridge's own actions set (owner routing, lead status): as features they would feed our own
# decisions back into the score (and a Lead's Status is where its outcome is read).
ACTION_PROPERTIES = ("OwnerId", "Status")
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
FIELD_NAME_RULE = "is not a Salesforce field API name (letters, digits and _, e.g. Score__c)"
OBJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")  # an sObject API name (Lead, Custom__c)
RECORD_ID = re.compile(r"^(00Q|003|001)[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")
ID_PREFIXES = {"00Q": "Lead", "003": "Contact", "001": "Account"}  # key prefix -> object


def record_object_type(record_id: str, object_type: str | None) -> str:
    """The object a record id names, read from its key prefix; ValueError for a malformed id."""
    if not RECORD_ID.match(record_id):
        raise ValueError("a Salesforce record id is a 15- or 18-character Lead (00Q), Contact (003) or "
                         "Account (001) id")
    return ID_PREFIXES[record_id[:3]]


def linked_people(object_type: str, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Other records (object type, id) that are the same person as this one: a converted Lead's Contact.

    Converting a Lead creates (or picks) a Contact for the same person and leaves the Lead read-only, with
    ConvertedContactId naming the Contact: leadbridge keeps both as one lead, written through the Contact.
    """
    contact = fields.get("ConvertedContactId")
    converted = fields.get("IsConverted")
    if (object_type == "lead" and (converted is True or str(converted).strip().lower() in ("true", "1"))
            and isinstance(contact, str) and RECORD_ID.match(contact) and contact.startswith("003")):
        return [("contact", contact)]
    return []


# canonical attribute -> field names that carry it (first match wins)

LEAD_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("Email",),
    "first_name": ("FirstName",),
    "last_name": ("LastName",),
    "title": ("Title",),
    "country": ("Country", "MailingCountry"),
    "company": ("Company",),
    "industry": ("Industry",),
    "employees": ("NumberOfEmployees",),
    "lifecycle_stage": ("Status",),
    "owner": ("OwnerId",),  # a pilot that assigns whole owners reads it (storage.pilots.owners_of)
}

# canonical account attribute -> Account field names that carry it
ACCOUNT_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("Name",),
    "domain": ("Website",),
    "industry": ("Industry",),
    "employees": ("NumberOfEmployees",),
    "country": ("BillingCountry",),
}
