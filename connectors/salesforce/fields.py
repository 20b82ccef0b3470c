"""Salesforce field names (Lead, Contact, Account) -> canonical lead and account attributes (first name listed wins)."""

from __future__ import annotations

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
}

ACCOUNT_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("Name",),
    "domain": ("Website",),
    "industry": ("Industry",),
    "employees": ("NumberOfEmployees",),
    "country": ("BillingCountry",),
}
