"""The feature schema as the admin, the JSON API and the CLI change it: map CRM properties to model features.

Every change saves a new schema version (storage.feature_schema, audited in the same transaction) after
checks that name the problem: an unknown CRM or object, a malformed property name, a property leadbridge
itself writes (its score fields, the owner, the lead status), an unknown kind, a bad top_n, a duplicate
feature or one that takes a built-in feature's name. A change that would leave the serving lead model
reading a feature no longer mapped alike is refused too, unless forced (the model then stops serving
and the cold-start rules take over until a model trained under the new schema is promoted). After the
commit, `announce_schema` tells the workers (one Redis key; they reload on their next batch).

The admin page and the JSON API also look a property up in its CRM before mapping it (`check_in_crm`,
through field discovery): one the CRM does not have is refused, and the CRM's label fills an empty one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from connectors.registry import PROVIDERS, feature_objects, own_properties, property_name_problem
from core.feature_schema import (
    DEFAULT_TOP_N,
    FIELD_KINDS,
    MAX_LABEL,
    FeatureSchema,
    MappedField,
    SchemaError,
    check_field,
    check_fields,
    default_feature,
    serving_problems,
)
from core.settings import Settings
from services import Conflict, NotFound, OperationError
from services.field_discovery import DEFAULT_SAMPLE, SKIP, DiscoveredField, discover, suggest_kind
from storage.feature_schema import (
    SchemaVersion,
    active_schema,
    describe_changes,
    publish_schema_version,
    save_schema,
    schema_history,
)
from storage.field_mappings import mapping_overrides


def current_schema(session: Session) -> FeatureSchema:
    """The schema in force."""
    return active_schema(session)


def object_type_of(crm: str, object_type: str) -> str:
    """`object_type` spelled as `crm` spells it (case-insensitive, singular or plural); refuses unknown ones."""
    if crm not in PROVIDERS:
        raise OperationError(f"crm must be one of {', '.join(PROVIDERS)}, not {crm!r}")
    allowed = feature_objects(crm)
    wanted = object_type.strip().lower().rstrip("s")
    for name in allowed:
        if name.lower().rstrip("s") == wanted:
            return name
    raise OperationError(f"{crm} properties can be mapped on {', '.join(allowed)}, not {object_type!r}")


def check_mapped_field(session: Session, f: MappedField) -> None:
    """Refuse a field leadbridge cannot read as a feature (OperationError naming the problem)."""
    problem = property_name_problem(f.crm, f.property)
    if problem is not None:
        raise OperationError(f"{f.crm} {f.object_type}: property {problem}")
    overrides = mapping_overrides(session, f.crm, f.object_type) if f.crm in PROVIDERS else {}
    why = own_properties(f.crm, overrides).get(f.property.lower())
    if why is not None:
        raise OperationError(f"{f.crm} {f.object_type}.{f.property} cannot be a feature: {why}")


def make_field(crm: str, object_type: str, prop: str, kind: str, *, feature: str | None = None, label: str = "",
               fit: bool = False, top_n: int = DEFAULT_TOP_N) -> MappedField:
    """A MappedField from user input, with the CRM's spelling of the object and the default feature name."""
    crm = crm.strip().lower()
    if kind not in FIELD_KINDS:
        raise OperationError(f"unknown kind {kind!r}; use one of {', '.join(FIELD_KINDS)}")
    prop = prop.strip()
    return MappedField(crm=crm, object_type=object_type_of(crm, object_type), property=prop,
                       kind=kind,  # type: ignore[arg-type]
                       feature=(feature.strip() if feature else default_feature(prop)), label=label.strip(),
                       fit=fit, top_n=top_n)


def save_fields(session: Session, actor: str, fields: Sequence[MappedField], *, force: bool = False) -> FeatureSchema:
    """Replace the mapped fields with `fields` (a new version, audited); refuses bad input, changing nothing."""
    for f in fields:
        object_type_of(f.crm, f.object_type)
        check_mapped_field(session, f)
    try:
        check_fields(fields)
    except SchemaError as exc:
        raise OperationError(str(exc)) from None
    if not force:
        _check_champion(session, FeatureSchema(0, tuple(fields)))
    return save_schema(session, fields, actor=actor)


def map_field(session: Session, actor: str, field: MappedField, *, force: bool = False) -> FeatureSchema:
    """Map one property (or change how it is mapped); returns the schema now in force."""
    current = active_schema(session)
    kept = [f for f in current.fields if f.source != field.source]
    return save_fields(session, actor, [*kept, field], force=force)


def unmap_field(session: Session, actor: str, crm: str, object_type: str, prop: str, *,
                force: bool = False) -> FeatureSchema:
    """Stop using one property as a feature; NotFound when it is not mapped."""
    crm = crm.strip().lower()
    object_type = object_type_of(crm, object_type)
    current = active_schema(session)
    found = current.field_for(crm, object_type, prop.strip())
    if found is None:
        raise NotFound(f"{crm} {object_type}.{prop} is not mapped")
    return save_fields(session, actor, [f for f in current.fields if f is not found], force=force)


def history(session: Session, limit: int = 100) -> list[SchemaVersion]:
    """Saved schema versions, newest first."""
    return schema_history(session, limit)


@dataclass(frozen=True)
class HistoryEntry:
    """One saved version with who saved it and what it changed against the version before."""

    schema: FeatureSchema
    actor: str
    created_at: datetime
    changes: tuple[str, ...]


def history_entries(session: Session, limit: int = 100) -> list[HistoryEntry]:
    """Saved versions, newest first, each with the lines saying what it mapped, unmapped or changed."""
    versions = schema_history(session, limit + 1)  # one more: what the oldest shown version changed
    entries = []
    for i, v in enumerate(versions[:limit]):
        before = versions[i + 1].schema if i + 1 < len(versions) else FeatureSchema.empty()
        entries.append(HistoryEntry(v.schema, v.actor, v.created_at, tuple(describe_changes(before, v.schema))))
    return entries


def check_in_crm(settings: Settings, field: MappedField, *, redis_client: Any = None,
                 http_session: Any = None) -> tuple[MappedField, list[str]]:
    """Look the field's property up in its CRM before it is mapped; returns the field and warnings.

    The field comes back with the CRM's spelling of the property and, when none was given, its label (CSV
    exports head their columns with it). When the CRM is not configured or cannot be reached the field is
    accepted as it is, with a warning saying it was not checked.

    Raises:
        OperationError: a malformed field, or a property the CRM says its object does not have (400).
        NotFound: the CRM says it has no such object.
    """
    problem = property_name_problem(field.crm, field.property)
    if problem is not None:
        raise OperationError(f"{field.crm} {field.object_type}: property {problem}")
    try:
        check_field(field)
    except SchemaError as exc:
        raise OperationError(str(exc)) from None
    where = f"{field.crm} {field.object_type}.{field.property}"
    try:
        report = discover(settings, field.crm, [field.object_type], 0, session=http_session,
                          redis_client=redis_client)
    except NotFound:
        raise
    except OperationError as exc:  # not configured (409) or the CRM refused / could not be reached (502)
        return field, [f"{where} was not checked against the CRM ({exc.message}); it is mapped as given"]
    wanted = field.property.lower()
    found = next((f for f in report.fields if f.info.name.lower() == wanted), None)
    if found is None:
        raise OperationError(f"{field.crm} {field.object_type} has no property {field.property!r} "
                             "(see its discovered properties for the internal names)", code="unknown_property")
    info = found.info
    field = replace(field, property=info.name, label=field.label or info.label[:MAX_LABEL])
    warnings = []
    suggestion = suggest_kind(info)
    if suggestion.kind == SKIP:
        warnings.append(f"discovery suggests not using {where} as a feature: {suggestion.reason}")
    return field, warnings


@dataclass(frozen=True)
class DiscoveredRow:
    """A discovered property and how the schema in force maps it (None: not mapped)."""

    found: DiscoveredField
    mapped: MappedField | None


@dataclass(frozen=True)
class CrmDiscovery:
    """What discovery found in one CRM for the admin page, or why it could not look."""

    crm: str
    label: str
    configured: bool
    error: str | None
    sample: int
    rows: tuple[DiscoveredRow, ...]


def discover_for_page(settings: Settings, schema: FeatureSchema, *, redis_client: Any = None,
                      sample: int = DEFAULT_SAMPLE) -> list[CrmDiscovery]:
    """Every CRM's mappable properties (usable ones first, custom ones first among them), each with its
    mapping in force; a CRM that is not configured or cannot be reached says so instead."""
    out = []
    for crm, entry in PROVIDERS.items():
        try:
            report = discover(settings, crm, list(feature_objects(crm)), sample, redis_client=redis_client)
        except OperationError as exc:
            out.append(CrmDiscovery(crm, entry.label, exc.code != "not_configured", exc.message, sample, ()))
            continue
        rows = sorted(report.fields, key=lambda f: (f.suggestion.kind == SKIP, not f.info.custom,
                                                    f.info.object_type, f.info.name.lower()))
        out.append(CrmDiscovery(crm, entry.label, True, None, sample, tuple(
            DiscoveredRow(f, schema.field_for(crm, f.info.object_type, f.info.name)) for f in rows)))
    return out


def announce_schema(redis: Any, schema: FeatureSchema) -> bool:
    """After the commit: tell the workers the version in force; False if Redis could not be told (a worker
    that finds no version re-reads the schema from the database within a minute)."""
    try:
        publish_schema_version(redis, schema.version)
    except Exception:  # noqa: BLE001 - the table is right; workers fall back to re-reading it
        return False
    return True


def _check_champion(session: Session, schema: FeatureSchema) -> None:
    from services.models import read_metadata
    from storage.model_registry import champion

    row = champion(session, "lead")
    if row is None:
        return
    metadata, _error = read_metadata(row.path)
    problems = serving_problems(schema, metadata) if metadata else []
    if problems:
        raise Conflict(f"the serving lead model {row.version} needs what this change removes: {'; '.join(problems)}. "
                       "Promote a model trained without it first, or force the change (the cold-start rules then "
                       "serve until a model trained under the new schema is promoted)", code="schema_in_use")
