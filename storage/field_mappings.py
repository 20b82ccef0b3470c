"""Field mappings in force: which CRM field receives each leadbridge output (admin overrides)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import FieldMapping

# The object type whose mapping applies to lead writes, per CRM.
LEAD_OBJECT_TYPES = {"hubspot": "contacts", "salesforce": "Lead"}


def mapping_overrides(session: Session, crm: str, object_type: str | None = None) -> dict[str, str]:
    """output -> field name for the rows an admin saved ('' = do not write); built-in names need no row."""
    target = object_type or LEAD_OBJECT_TYPES[crm]
    rows = session.scalars(select(FieldMapping).where(FieldMapping.crm == crm, FieldMapping.object_type == target))
    return {row.output: row.field_name for row in rows}
