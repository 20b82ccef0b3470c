"""The audit log: who changed what and when, with before/after values scrubbed of secrets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.records import utcnow
from storage.models import AuditEntry

REDACTED = "[redacted]"
# Any key containing one of these words holds a secret or something that grants access.
_SENSITIVE = ("secret", "password", "token", "webhook_url", "api_key", "private_key", "credential", "session_id")


def is_sensitive(key: str) -> bool:
    """True when a value under `key` must never be written to the audit log."""
    lowered = key.lower()
    return any(word in lowered for word in _SENSITIVE)


def scrub(value: Any) -> Any:
    """A copy of `value` with every sensitive key's value replaced by a marker (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): (REDACTED if is_sensitive(str(k)) and v not in (None, "") else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # datetimes and the like: JSON columns need plain values


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction, so it commits (or not) with the change itself."""
    entry = AuditEntry(
        actor=actor[:320], action=action[:100], target=(target[:200] if target else None),
        before=scrub(before) if before is not None else None, after=scrub(after) if after is not None else None,
        created_at=utcnow(),
    )
    session.add(entry)
    session.flush()
    return entry


def list_entries(
    session: Session, *, limit: int = 100, offset: int = 0, action: str | None = None, actor: str | None = None,
    target: str | None = None,
) -> tuple[list[AuditEntry], int]:
    """Entries newest first, filtered by action prefix, actor and target; also the total that match."""
    query = select(AuditEntry)
    if action:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if target:
        query = query.where(AuditEntry.target == target)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset))
    return list(rows), total
