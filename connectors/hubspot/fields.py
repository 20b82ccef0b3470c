"""HubSpot property names -> canonical lead and account attributes (first name listed wins)."""

from __future__ import annotations

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
}

ACCOUNT_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "domain": ("domain",),
    "industry": ("industry",),
    "employees": ("numberofemployees",),
    "country": ("country",),
}
