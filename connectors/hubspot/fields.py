"""HubSpot property names: the score fields leadbridge writes, and those read as lead/account attributes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# canonical score field -> the custom contact/company property it is written to (admins can map others)
SCORE_FIELD_NAMES = {
    "score": "leadbridge_score",
    "grade": "leadbridge_grade",
    "reasons": "leadbridge_reasons",
    "tier": "leadbridge_tier",
    "model_version": "leadbridge_model_version",
    "scored_at": "leadbridge_scored_at",
    # How the score last moved (contacts only: accounts keep no score history)
    "previous_score": "leadbridge_previous_score",
    "score_change": "leadbridge_score_change",
    "score_trend": "leadbridge_score_trend",
    "score_changed_at": "leadbridge_score_changed_at",
    "score_change_reason": "leadbridge_score_change_reason",
}
GROUP_FIELD_NAME = "leadbridge_group"  # a contact's pilot group (hidden property; never mapped elsewhere)
WRITTEN_FIELD_NAMES = {**SCORE_FIELD_NAMES, "group": GROUP_FIELD_NAME}
MAPPED_OBJECTS = ("contacts", "companies")  # the objects whose score fields an admin can map
# The objects whose properties an admin can map to model features (the people leadbridge scores).
FEATURE_OBJECTS = ("contacts",)
# Properties leadbridge's own actions set (owner routing, lead status): as features they would feed our
# own decisions back into the score.
ACTION_PROPERTIES = ("hubspot_owner_id", "hs_lead_status")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
FIELD_NAME_RULE = "is not a HubSpot property name (lower-case letters, digits and _)"
OBJECT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")  # an object type in API paths: contacts, p_custom, 2-123
RECORD_ID = re.compile(r"^[0-9]{1,20}$")


def record_object_type(record_id: str, object_type: str | None) -> str:
    """The object a record id names for a test write (contacts unless told); ValueError for a malformed id."""
    object_type = object_type or "contacts"
    if object_type in MAPPED_OBJECTS and not RECORD_ID.match(record_id):
        raise ValueError("a HubSpot record id is a number, e.g. 51")
    return object_type


def linked_people(object_type: str, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Other records that are the same person as this one: none (a HubSpot person is one contact record)."""
    return []


# canonical attribute -> property names that carry it (first match wins)

LEAD_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "first_name": ("firstname",),
    "last_name": ("lastname",),
    "title": ("jobtitle",),
    "country": ("country",),
    "company": ("company",),
    "industry": ("industry",),
    "employees": ("numemployees", "numberofemployees"),
    "lifecycle_stage": ("lifecyclestage",),
    "owner": ("hubspot_owner_id",),  # a pilot that assigns whole owners reads it (storage.pilots.owners_of)
}

# canonical account attribute -> company property names that carry it
ACCOUNT_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "domain": ("domain",),
    "industry": ("industry",),
    "employees": ("numberofemployees",),
    "country": ("country",),
}
