"""Vendor property names -> canonical lead/account attributes (vendor shapes stay in connectors/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# canonical attribute -> property names that carry it, per CRM (first match wins)
LEAD_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "hubspot": {
        "email": ("email",),
        "first_name": ("firstname",),
        "last_name": ("lastname",),
        "title": ("jobtitle",),
        "country": ("country",),
        "company": ("company",),
        "industry": ("industry",),
        "employees": ("numemployees", "numberofemployees"),
        "lifecycle_stage": ("lifecyclestage",),
    },
    "salesforce": {
        "email": ("Email",),
        "first_name": ("FirstName",),
        "last_name": ("LastName",),
        "title": ("Title",),
        "country": ("Country", "MailingCountry"),
        "company": ("Company",),
        "industry": ("Industry",),
        "employees": ("NumberOfEmployees",),
        "lifecycle_stage": ("Status",),
    },
    "web": {
        "email": ("email",),
        "first_name": ("firstName", "first_name"),
        "last_name": ("lastName", "last_name"),
        "title": ("title", "jobTitle", "job_title"),
        "country": ("country",),
        "company": ("company", "company_name"),
        "industry": ("industry",),
        "employees": ("employees", "company_size"),
    },
}

ACCOUNT_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "hubspot": {
        "name": ("name",),
        "domain": ("domain",),
        "industry": ("industry",),
        "employees": ("numberofemployees",),
        "country": ("country",),
    },
    "salesforce": {
        "name": ("Name",),
        "domain": ("Website",),
        "industry": ("Industry",),
        "employees": ("NumberOfEmployees",),
        "country": ("BillingCountry",),
    },
}


def canonical_fields(crm: str, properties: Mapping[str, Any], table: dict[str, dict[str, tuple[str, ...]]]) -> dict[str, Any]:
    """Pick the canonical attributes present in `properties` (vendor names) for `crm`."""
    found: dict[str, Any] = {}
    for attribute, names in table.get(crm, {}).items():
        for name in names:
            value = properties.get(name)
            if value not in (None, ""):
                found[attribute] = value
                break
    return found


def lead_fields(crm: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical lead attributes (email, names, title, company, ...) found in a vendor payload."""
    return canonical_fields(crm, properties, LEAD_FIELDS)


def account_fields(crm: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical account attributes found in a vendor company/Account payload."""
    return canonical_fields(crm, properties, ACCOUNT_FIELDS)
