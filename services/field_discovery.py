"""Field discovery: a CRM's own properties, how often a sample of records fills them, and which feature kind
each could become (numeric, categorical, boolean, date, text) or why it should be skipped.

The rules are plain functions over `connectors.base.PropertyInfo`, so the CLI, the JSON API and the admin
pages suggest the same thing. HubSpot webhook subscriptions cannot be changed through HubSpot's API for a
private app, so `webhook_subscriptions` only says what the admin must enable, in the app settings' format.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import (AUDIT_FIELDS, AuthConnectorError, ConnectorError, PermanentConnectorError, PropertyInfo,
                             is_own_field)
from connectors.registry import PROVIDERS, build_connector, provider
from connectors.retry import SETUP_RETRY
from core.settings import Settings
from services import Conflict, NotFound, OperationError

FEATURE_KINDS = ("numeric", "categorical", "boolean", "date", "text")
SKIP = "skip"
DEFAULT_SAMPLE = 200
MAX_SAMPLE = 1000
CATEGORICAL_MAX = 50  # more distinct values than this is not a category a model can learn from a sample
MIN_JUDGED = 10  # filled values needed before "almost every value differs" says anything
SPARSE = 0.05  # below this fill rate the reason says so

_NUMERIC = {"number", "double", "int", "long", "currency", "percent"}
_BOOLEAN = {"bool", "boolean"}
_DATE = {"date", "datetime"}
_CATEGORICAL = {"enumeration", "picklist", "multipicklist", "combobox"}
_CONTACT_DETAIL = {"email", "phone", "url"}  # Salesforce types; HubSpot says fieldType phonenumber
_UNUSABLE = {"base64": "binary content", "address": "a compound address (map its parts)",
             "location": "a compound geolocation", "anyType": "a value of any type", "time": "a time of day",
             "encryptedstring": "encrypted", "file": "a file"}


@dataclass(frozen=True)
class Suggestion:
    """The feature kind a property could become, or "skip", and why."""

    kind: str
    reason: str


@dataclass(frozen=True)
class DiscoveredField:
    """One property with its suggestion."""

    info: PropertyInfo
    suggestion: Suggestion

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape the CLI's --json and the API share."""
        i = self.info
        return {"crm": i.crm, "object_type": i.object_type, "name": i.name, "label": i.label, "type": i.crm_type,
                "field_type": i.field_type, "custom": i.custom, "read_only": i.read_only, "calculated": i.calculated,
                "options": i.options, "sampled": i.sampled, "filled": i.filled, "distinct": i.distinct,
                "fill_rate": None if i.fill_rate is None else round(i.fill_rate, 4),
                "suggested_kind": self.suggestion.kind, "reason": self.suggestion.reason}


@dataclass(frozen=True)
class DiscoveryReport:
    """What discovery found in one CRM: every property of the objects asked for, sampled."""

    crm: str
    objects: tuple[str, ...]
    sample: int
    fields: tuple[DiscoveredField, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape the CLI's --json and the API share."""
        return {"crm": self.crm, "objects": list(self.objects), "sample": self.sample,
                "fields": [f.as_dict() for f in self.fields]}


# ---------------------------------------------------------------------------------------------- the rules
def _fixed_reason(info: PropertyInfo) -> str | None:
    """Why a property can never be a feature whatever its values, or None."""
    crm = provider(info.crm)
    lower = info.name.lower()
    if is_own_field(info.name) or lower in {n.lower() for n in crm.fields.SCORE_FIELD_NAMES.values()}:
        return "leadbridge writes this field (its own score output)"
    if info.crm_type == "id" or lower == "hs_object_id":
        return "the record's own id"
    refs = {r.strip().lower() for r in info.references.split(",") if r.strip()}
    if "owner" in refs or lower in ("hubspot_owner_id", "ownerid"):
        return "the record's owner: who works the lead, not something about the lead"
    if info.crm_type == "reference":
        return f"a lookup to another record ({info.references or 'unknown object'}): an id, not a value"
    if info.calculated:
        return "calculated by the CRM (formula, roll-up or auto-number): map the fields it reads instead"
    if info.name in crm.history.STATE_FIELDS:
        return "where the record stands now (status, stage, conversion): it follows the outcome the model predicts"
    if info.name in crm.history.VOLATILE_FIELDS or lower in AUDIT_FIELDS:
        return "a system stamp (created/modified): it describes the record, not the lead"
    for attribute, names in crm.fields.LEAD_FIELDS.items():
        if info.name in names:
            return f"leadbridge already reads it as the built-in {attribute!r} attribute"
    unusable = _UNUSABLE.get(info.crm_type) or _UNUSABLE.get(info.field_type)
    if unusable:
        return f"{unusable}: not a value a model can use"
    if info.crm_type in _CONTACT_DETAIL or info.field_type == "phonenumber":
        return "a contact detail (e-mail, phone, URL): unique per person, nothing a model can generalise"
    if info.unique:
        return "unique per record (an identifier)"
    return None


def _by_type(info: PropertyInfo) -> Suggestion | None:
    """The kind the CRM's type settles on its own, or None for strings (the sample decides)."""
    if info.crm_type in _NUMERIC:
        return Suggestion("numeric", f"{info.crm_type} field")
    if info.crm_type in _BOOLEAN or info.field_type == "booleancheckbox":
        return Suggestion("boolean", "checkbox (true/false)")
    if info.crm_type in _DATE:
        return Suggestion("date", f"{info.crm_type}: used as its age in days at scoring time")
    if info.crm_type in _CATEGORICAL:
        options = f"{info.options} options" if info.options else "options"
        if info.crm_type == "multipicklist" or info.field_type == "checkbox":
            return Suggestion("categorical", f"multi-select with {options}: each combination counts as one value")
        return Suggestion("categorical", f"pick-list with {options}")
    if info.crm_type == "textarea" or info.field_type in ("textarea", "html"):
        return Suggestion("text", "long text: used as its length and whether it is filled")
    return None


def _by_sample(info: PropertyInfo) -> Suggestion:
    """A string property's kind from the values the sample held."""
    filled, distinct = info.filled, info.distinct
    if filled == 0:
        return Suggestion("text", "free text (no sampled values to judge by)")
    if info.numeric >= 0.95 * filled:
        return Suggestion("numeric", f"text field, but {info.numeric} of {filled} sampled values are numbers")
    if distinct <= CATEGORICAL_MAX and distinct <= filled / 2:
        return Suggestion("categorical", f"{distinct} distinct values in {filled} filled records")
    if filled >= MIN_JUDGED and distinct >= 0.9 * filled and info.multiword < filled / 2:
        return Suggestion(SKIP, f"{distinct} distinct values in {filled} filled records, mostly single words: "
                                "an identifier or code")
    return Suggestion("text", f"free text ({distinct} distinct values in {filled} filled records): used as its "
                              "length and whether it is filled")


def suggest_kind(info: PropertyInfo) -> Suggestion:
    """The feature kind a property could become (numeric, categorical, boolean, date, text) or skip, with why."""
    reason = _fixed_reason(info)
    if reason is not None:
        return Suggestion(SKIP, reason)
    if info.sampled and not info.filled:
        return Suggestion(SKIP, f"empty in all {info.sampled} sampled records")
    suggestion = _by_type(info) or _by_sample(info)
    rate = info.fill_rate
    if rate is not None and rate < SPARSE and suggestion.kind != SKIP:
        suggestion = Suggestion(suggestion.kind, f"{suggestion.reason}; filled in only {rate:.1%} of the sample")
    return suggestion


# ---------------------------------------------------------------------------------------------- the operation
def check_request(crm: str, objects: Sequence[str] | None, sample: int) -> tuple[str, ...]:
    """The object types to discover (the CRM's defaults when none); OperationError for bad input."""
    if crm not in PROVIDERS:
        raise NotFound(f"crm must be one of {', '.join(PROVIDERS)}, not {crm!r}")
    if not 0 <= sample <= MAX_SAMPLE:
        raise OperationError(f"sample must be between 0 and {MAX_SAMPLE} records, not {sample}")
    fields = provider(crm).fields
    chosen = tuple(dict.fromkeys(o.strip() for o in objects or () if o.strip())) or tuple(fields.FEATURE_OBJECTS)
    bad = [o for o in chosen if not fields.OBJECT_NAME.match(o)]
    if bad:
        raise OperationError(f"not a {provider(crm).label} object name: {', '.join(repr(b) for b in bad)}")
    return chosen


def discover(settings: Settings, crm: str, objects: Sequence[str] | None = None, sample: int = DEFAULT_SAMPLE, *,
             session: Any = None, redis_client: Any = None) -> DiscoveryReport:
    """List the properties of `objects` in `crm` through its API, sample the newest records, suggest kinds.

    `session` routes Salesforce's SDK (the sandbox CRM); `redis_client` makes the calls share the workers'
    rate-limit bucket.

    Raises:
        NotFound: unknown CRM, or an object the CRM does not have.
        Conflict: the CRM is not configured (code not_configured).
        OperationError: bad sample size or object name (400); the CRM refused or could not be reached (502).
    """
    chosen = check_request(crm, objects, sample)
    label = provider(crm).label
    try:
        connector = build_connector(crm, settings, retry=SETUP_RETRY, session=session, redis_client=redis_client)
    except ValueError as exc:
        raise Conflict(f"{label} is not configured: {exc}", code="not_configured") from None
    if connector is None:
        raise Conflict(f"{label} is not configured: {_settings_hint(crm)}", code="not_configured")
    found: list[DiscoveredField] = []
    for object_type in chosen:
        try:
            infos = connector.discover_properties(object_type, sample)
        except PermanentConnectorError as exc:
            if exc.status in (400, 404):
                raise NotFound(f"{label} has no object {object_type!r} (or this account cannot read it): "
                               f"{exc.vendor_message}") from None
            raise OperationError(f"{label} refused to describe {object_type!r}: {exc}", 502, "crm_refused") from None
        except AuthConnectorError as exc:
            raise OperationError(f"{label} refused the credentials: {exc}", 502, "crm_refused") from None
        except ConnectorError as exc:
            raise OperationError(f"{label} could not be reached: {exc}", 502, "crm_unavailable") from None
        found.extend(DiscoveredField(info, suggest_kind(info)) for info in infos)
    return DiscoveryReport(crm, chosen, sample, tuple(found))


def _settings_hint(crm: str) -> str:
    if crm == "hubspot":
        return "set HUBSPOT_ACCESS_TOKEN (and HUBSPOT_BASE_URL for the sandbox CRM)"
    return ("set SALESFORCE_USERNAME + SALESFORCE_PASSWORD (+ SALESFORCE_SECURITY_TOKEN), or SALESFORCE_SESSION_ID + "
            "SALESFORCE_INSTANCE_URL")


# ---------------------------------------------------------------------------------------------- webhook subscriptions
def webhook_subscriptions(properties: Iterable[str]) -> list[dict[str, Any]]:
    """The `contact.propertyChange` subscriptions (one per property) a HubSpot app must have for these properties.

    Each entry is written as HubSpot's app configuration writes it (webhooks.json `legacyCrmObjects`).

    Raises:
        OperationError: a name that is not a HubSpot property name, or no property at all.
    """
    names = list(dict.fromkeys(p.strip() for p in properties if p.strip()))
    fields = PROVIDERS["hubspot"].fields
    bad = [n for n in names if not fields.FIELD_NAME.match(n)]
    if bad:
        raise OperationError(f"{', '.join(repr(b) for b in bad)} {fields.FIELD_NAME_RULE}")
    if not names:
        raise OperationError("name at least one HubSpot contact property (none is mapped yet)")
    return [{"subscriptionType": "contact.propertyChange", "propertyName": n, "active": True} for n in names]


def mapped_hubspot_properties(session: Any) -> list[str]:
    """The HubSpot contact properties the active feature schema maps (none before a schema is saved)."""
    from storage.feature_schema import active_schema

    return list(active_schema(session).properties_of("hubspot", "contacts"))


def webhooks_config(subscriptions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The `subscriptions` part of a HubSpot app's webhooks.json holding these subscriptions."""
    return {"subscriptions": {"legacyCrmObjects": [dict(s) for s in subscriptions]}}
