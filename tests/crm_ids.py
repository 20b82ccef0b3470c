"""Test helpers for CRM ids, which storage keeps as LeadCrmId / AccountCrmId rows rather than lead columns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select

from storage.models import Account, AccountCrmId, Lead, LeadCrmId


def with_ids(record: Lead | Account, *, hubspot: str | None = None,
             salesforce: str | None = None) -> list[Any]:
    """The lead (or account) and its CRM id rows, to add together (Salesforce's type from the id's prefix)."""
    rows: list[Any] = [record]
    for crm, object_id in (("hubspot", hubspot), ("salesforce", salesforce)):
        if object_id is None:
            continue
        if isinstance(record, Account):
            object_type = "company" if crm == "hubspot" else "account"
            rows.append(AccountCrmId(account=record, crm=crm, object_type=object_type, object_id=object_id))
        else:
            object_type = "contact" if crm == "hubspot" or object_id.startswith("003") else "lead"
            rows.append(LeadCrmId(lead=record, crm=crm, object_type=object_type, object_id=object_id))
    return rows


def has_id(crm: str, *object_ids: str) -> ColumnElement[bool]:
    """Leads with a record in `crm` among `object_ids` (any record of that CRM when none are given)."""
    query = select(LeadCrmId.lead_id).where(LeadCrmId.crm == crm)
    if object_ids:
        query = query.where(LeadCrmId.object_id.in_(object_ids))
    return Lead.id.in_(query)


def crm_id(session: Any, lead_id: int, crm: str) -> str | None:
    """The lead's newest record id in `crm`."""
    return session.scalar(select(LeadCrmId.object_id)
                          .where(LeadCrmId.lead_id == lead_id, LeadCrmId.crm == crm)
                          .order_by(LeadCrmId.id.desc()).limit(1))
