"""The feature schema in the database: one row per saved version, the newest is active; every change audited.

A save that changes nothing makes no new version. The version number also goes to the Redis key
`FEATURE_SCHEMA_KEY` once committed (`publish_schema_version`): workers compare it per batch and reload the
schema only when it moved, so the hot path never asks the database (tasks.resources).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.feature_schema import FeatureSchema, MappedField, SchemaError, check_fields
from core.keys import FEATURE_SCHEMA_KEY
from storage.audit import record
from storage.models import FeatureSchemaVersion

AUDIT_ACTION = "fields.schema"
AUDIT_TARGET = "feature_schema"


@dataclass(frozen=True)
class SchemaVersion:
    """One saved version: the schema, who saved it and when."""

    schema: FeatureSchema
    actor: str
    created_at: datetime


def _schema_of(row: FeatureSchemaVersion) -> FeatureSchema:
    return FeatureSchema(row.version, tuple(MappedField.from_json(f) for f in row.fields or []))


def _latest(session: Session) -> FeatureSchemaVersion | None:
    return session.scalars(select(FeatureSchemaVersion).order_by(FeatureSchemaVersion.version.desc())).first()


def active_schema(session: Session) -> FeatureSchema:
    """The schema in force: the newest saved version (version 0, nothing mapped, before the first save)."""
    row = _latest(session)
    return _schema_of(row) if row is not None else FeatureSchema.empty()


def save_schema(session: Session, fields: Sequence[MappedField], *, actor: str) -> FeatureSchema:
    """Save `fields` as the next version (in the caller's transaction, audited) and return it.

    Raises SchemaError (nothing written) for malformed or ambiguous fields; saving the fields already
    in force returns the active schema unchanged.
    """
    fields = tuple(fields)
    check_fields(fields)
    row = _latest(session)
    current = _schema_of(row) if row is not None else FeatureSchema.empty()
    if [f.to_json() for f in current.fields] == [f.to_json() for f in fields]:
        return current
    schema = FeatureSchema(current.version + 1, fields)
    session.add(FeatureSchemaVersion(version=schema.version, fields=[f.to_json() for f in fields],
                                     fingerprint=schema.fingerprint, actor=actor[:320]))
    session.flush()
    record(session, actor=actor, action=AUDIT_ACTION, target=AUDIT_TARGET,
           before={"version": current.version, "fields": [f.to_json() for f in current.fields]},
           after={"version": schema.version, "fingerprint": schema.fingerprint,
                  "fields": [f.to_json() for f in fields], "changes": describe_changes(current, schema)})
    return schema


def describe_changes(before: FeatureSchema, after: FeatureSchema) -> list[str]:
    """Short lines saying which fields were mapped, unmapped or changed between two versions."""
    old = {f.source: f for f in before.fields}
    new = {f.source: f for f in after.fields}
    lines = []
    for source, f in new.items():
        if source not in old:
            lines.append(f"mapped {f.crm} {f.object_type}.{f.property} as {f.kind} feature {f.feature}")
        elif old[source] != f:
            lines.append(f"changed {f.crm} {f.object_type}.{f.property}: {_diff(old[source], f)}")
    for source, f in old.items():
        if source not in new:
            lines.append(f"unmapped {f.crm} {f.object_type}.{f.property} (feature {f.feature})")
    return lines


def _diff(a: MappedField, b: MappedField) -> str:
    parts = []
    for name, x, y in zip(("kind", "feature", "label", "fit", "top_n"), (a.kind, a.feature, a.label, a.fit, a.top_n),
                          (b.kind, b.feature, b.label, b.fit, b.top_n)):
        if x != y:
            parts.append(f"{name} {x!r} -> {y!r}")
    return ", ".join(parts) or "renamed"


def schema_history(session: Session, limit: int = 100) -> list[SchemaVersion]:
    """Saved versions, newest first."""
    rows = session.scalars(select(FeatureSchemaVersion).order_by(FeatureSchemaVersion.version.desc()).limit(limit))
    return [SchemaVersion(_schema_of(row), row.actor, row.created_at) for row in rows]


def publish_schema_version(redis: Any, version: int) -> None:
    """Tell every worker which schema version is in force (they reload when it moves)."""
    redis.set(FEATURE_SCHEMA_KEY, int(version))


def published_schema_version(redis: Any) -> int | None:
    """The version workers were told (None: not published, e.g. after Redis lost its data)."""
    raw = redis.get(FEATURE_SCHEMA_KEY)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


__all__ = ["SchemaError", "SchemaVersion", "active_schema", "describe_changes", "publish_schema_version",
           "published_schema_version", "save_schema", "schema_history"]
