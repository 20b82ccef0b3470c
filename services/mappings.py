"""Field mappings (which CRM field receives score, grade, reasons, tier, ...) and the one-record test write.

A row in `field_mappings` overrides the connector's built-in field name for one (crm, object type,
output); an empty field name means "do not write this output". Without rows, the connectors' own names
apply (HubSpot `leadbridge_*` properties, Salesforce `Leadbridge_*__c` fields).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import MOVEMENT_FIELDS, SCORE_FIELDS, CrmConnector, shown_values
from connectors.registry import PROVIDERS, build_connector, provider
from connectors.retry import TRIAL_WRITE_RETRY
from core.bands import Cutoffs
from core.settings import Settings
from services import Conflict, OperationError
from storage.audit import record
from storage.models import Account, AccountCrmId, FieldMapping, Lead, LeadCrmId
from storage.scores import movement_of
from tasks.bands import cutoffs_in_force

OBJECT_TYPES = {name: p.fields.MAPPED_OBJECTS for name, p in PROVIDERS.items()}  # connectors/<crm>/fields.py
OUTPUTS = SCORE_FIELDS  # score, grade, reasons, tier, model_version, scored_at, then the movement fields
ACCOUNT_OBJECTS = ("companies", "Account")  # accounts keep no score history: no movement outputs to map


def outputs_of(object_type: str) -> tuple[str, ...]:
    """The outputs an object's records are written (accounts: the score fields without the movement ones)."""
    return tuple(o for o in OUTPUTS if o not in MOVEMENT_FIELDS) if object_type in ACCOUNT_OBJECTS else OUTPUTS


def default_names(crm: str) -> dict[str, str]:
    """The connector's built-in field names for `crm`."""
    return dict(provider(crm).fields.SCORE_FIELD_NAMES)


def check_target(crm: str, object_type: str) -> None:
    """Refuse unknown CRMs and object types."""
    if crm not in OBJECT_TYPES:
        raise OperationError(f"crm must be one of {', '.join(OBJECT_TYPES)}, not {crm!r}")
    if object_type not in OBJECT_TYPES[crm]:
        raise OperationError(f"{crm} object type must be one of {', '.join(OBJECT_TYPES[crm])}, not {object_type!r}")


def effective_names(session: Session, crm: str, object_type: str) -> dict[str, str]:
    """output -> CRM field name in force ('' = not written), defaults filled in."""
    check_target(crm, object_type)
    names = default_names(crm)
    rows = session.scalars(select(FieldMapping).where(FieldMapping.crm == crm, FieldMapping.object_type == object_type))
    for row in rows:
        if row.output in names:
            names[row.output] = row.field_name
    return names


def all_mappings(session: Session) -> list[dict[str, Any]]:
    """Every (crm, object type) with its outputs, the field in force and whether it is the default."""
    out = []
    for crm, object_types in OBJECT_TYPES.items():
        defaults = default_names(crm)
        for object_type in object_types:
            names = effective_names(session, crm, object_type)
            out.append({
                "crm": crm, "object_type": object_type,
                "fields": [{"output": o, "field_name": names[o], "default": defaults[o]}
                           for o in outputs_of(object_type)],
            })
    return out


def _check_field_name(crm: str, name: str) -> None:
    fields = provider(crm).fields
    if not fields.FIELD_NAME.match(name):
        raise OperationError(f"{name!r} {fields.FIELD_NAME_RULE}")


def save_mappings(
    session: Session, actor: str, crm: str, object_type: str, names: Mapping[str, str | None]
) -> dict[str, str]:
    """Set the field for some outputs (None or '' = do not write it; the default name removes the override)."""
    check_target(crm, object_type)
    unknown = sorted(set(names) - set(OUTPUTS))
    if unknown:
        raise OperationError(f"unknown output(s) {', '.join(unknown)}; known: {', '.join(OUTPUTS)}")
    cleaned: dict[str, str] = {}
    for output, value in names.items():
        name = (value or "").strip()
        if name:
            _check_field_name(crm, name)
        cleaned[output] = name
    used = [n for n in {**effective_names(session, crm, object_type), **cleaned}.values() if n]
    if len(used) != len(set(used)):
        raise OperationError("two outputs cannot write to the same field")
    before = effective_names(session, crm, object_type)
    defaults = default_names(crm)
    rows = {r.output: r for r in session.scalars(
        select(FieldMapping).where(FieldMapping.crm == crm, FieldMapping.object_type == object_type))}
    for output, name in cleaned.items():
        row = rows.get(output)
        if name == defaults[output]:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(FieldMapping(crm=crm, object_type=object_type, output=output, field_name=name))
        else:
            row.field_name = name
    session.flush()
    after = effective_names(session, crm, object_type)
    if after != before:
        changed = [o for o in OUTPUTS if before[o] != after[o]]
        record(session, actor=actor, action="field_mapping.update", target=f"{crm}:{object_type}",
               before={o: before[o] for o in changed}, after={o: after[o] for o in changed})
    return after


# --- test write -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialWriteResult:
    """What a test write sent to one CRM record and what the CRM answered."""

    crm: str
    object_type: str
    record_id: str
    fields: dict[str, Any] = field(default_factory=dict)  # CRM field name -> value sent
    written: bool = False
    error: str | None = None  # the vendor's own message when the write was refused
    source: str = ""  # where the values came from
    outputs: dict[str, str] = field(default_factory=dict)  # CRM field name -> the leadbridge output it holds


def _values_for(session: Session, crm: str, object_type: str, record_id: str, cutoffs: Cutoffs | None = None
                ) -> tuple[dict[str, Any], str]:
    """The values leadbridge holds for one CRM record, as the writeback shows them; Conflict when it holds none.

    A test write must never change what a live record shows: it writes exactly what leadbridge would write
    there anyway (connectors.base.shown_values, the tier included), and nothing to a record without a score.
    """

    model: Any = Account if object_type in ACCOUNT_OBJECTS else Lead
    label = "lead" if model is Lead else "account"
    ids: Any = AccountCrmId if model is Account else LeadCrmId
    owner = ids.account_id if model is Account else ids.lead_id
    records = select(model).join(ids, owner == model.id).where(ids.crm == crm)
    row = session.scalars(records.where(ids.object_id == record_id)).first()
    if row is None and crm == "salesforce" and len(record_id) == 15:
        # Salesforce shows 15-character ids; leadbridge may hold the 18-character form of the same record.
        row = session.scalars(records.where(func.substr(ids.object_id, 1, 15) == record_id)).first()
    where = f"{provider(crm).label} {object_type} {record_id}"
    if row is None:
        raise Conflict(f"leadbridge holds no values for {where}: it is not one of leadbridge's {label}s. Nothing was "
                       f"written. A test write writes the values leadbridge already holds, so it never changes a "
                       f"live record; pick a record leadbridge has scored.", code="no_values")
    if row.score is None:
        raise Conflict(f"leadbridge holds no values for {where}: the {label} is not scored yet. Nothing was written. "
                       f"A test write writes the values leadbridge already holds, so it never changes a live record; "
                       f"pick a record leadbridge has scored.", code="no_values")
    scored_at: datetime | None = row.scored_at
    if model is Lead:
        return (shown_values(row.score, row.grade, row.reasons, row.model_version, scored_at, cutoffs,
                             movement_of(row)),
                "the lead's stored values (what the writeback writes)")
    # Accounts keep no model version of their own (the account writer derives one): leave the CRM's value alone.
    values = shown_values(row.score, row.grade, row.reasons, None, scored_at, cutoffs)
    del values["model_version"]
    return values, "the account's stored values (model version left as the CRM shows it)"


def _mapped_connector(crm: str, settings: Settings, redis: Redis, names: dict[str, str]) -> CrmConnector:
    """The real connector for `crm`, writing to the mapped field names instead of its built-in ones."""
    # The workers' rate-limit bucket: a test write spends from the same budget as the writeback.
    connector = build_connector(crm, settings, redis_client=redis, retry=TRIAL_WRITE_RETRY)
    if connector is None and crm == "hubspot":
        raise Conflict("HubSpot is not configured: set HUBSPOT_ACCESS_TOKEN (and HUBSPOT_BASE_URL for the "
                       "sandbox CRM)", code="not_configured")
    if connector is None:
        raise Conflict("Salesforce is not configured: set SALESFORCE_USERNAME/SALESFORCE_PASSWORD (or "
                       "SALESFORCE_INSTANCE_URL and SALESFORCE_SESSION_ID)", code="not_configured")
    connector.field_names = names
    return connector


def trial_write(
    session: Session, settings: Settings, redis: Redis, actor: str, *, crm: str, record_id: str,
    object_type: str | None = None,
) -> TrialWriteResult:
    """Write leadbridge's fields to one CRM record through the real connector, with the mapping in force.

    The values are the ones leadbridge holds for that record, so the record shows what it showed before.

    Raises:
        Conflict: the CRM is not configured, or leadbridge holds no values for the record (unknown or not
            scored); nothing is written then.
    """
    from connectors.base import ConnectorError

    record_id = (record_id or "").strip()
    if crm not in PROVIDERS:
        raise OperationError(f"crm must be hubspot or salesforce, not {crm!r}")
    try:
        object_type = provider(crm).fields.record_object_type(record_id, object_type)
    except ValueError as exc:
        raise OperationError(str(exc)) from None
    check_target(crm, object_type)
    names = effective_names(session, crm, object_type)
    # First: "not configured" says more than "no values".
    connector = _mapped_connector(crm, settings, redis, names)
    values, origin = _values_for(session, crm, object_type, record_id, cutoffs_in_force(redis, session))
    values = {o: v for o, v in values.items() if names.get(o)}
    if not values:
        raise OperationError(f"no output is mapped to a {crm} {object_type} field")
    sent: dict[str, Any] = {}
    try:
        sent = connector.to_properties(values) if crm == "hubspot" else connector.to_fields(values)
        if crm == "hubspot":
            result = connector.write_fields({record_id: values}, object_type=object_type)
        else:
            result = connector.write_fields({record_id: values})
        error = result.failed.get(record_id)
        written = record_id in result.written
    except ConnectorError as exc:
        written, error = False, exc.vendor_message or str(exc)
    outcome = TrialWriteResult(crm=crm, object_type=object_type, record_id=record_id,
                              fields={k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
                                      for k, v in sent.items()},
                              written=written, error=error if not written else None, source=origin,
                              outputs={names[o]: o for o in values if names.get(o) in sent})
    record(session, actor=actor, action="field_mapping.test_write", target=f"{crm}:{object_type}:{record_id}",
           after={"written": written, "fields": sorted(sent), "error": outcome.error})
    return outcome
