"""The CrmConnector Protocol, its result types and the connector error hierarchy.

Every vendor module maps its SDK's failures onto these errors (always `raise ... from exc`) and its
records onto core.records types, so nothing outside connectors/ ever sees a vendor shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from connectors.parsing.common import META_KEY
from core.actions import Action, ActionResult, ActionTarget
from core.records import Account, Event, Lead, LeadActivity, Opportunity, Outcome, StageChange, Touch
from core.settings import Settings

# Canonical names of the fields leadbridge writes; each connector maps them to vendor field names.
SCORE_FIELDS = ("score", "grade", "reasons", "tier", "model_version", "scored_at")
# A lead's pilot group (issue 17), in a field reps do not see: "pilot" or "control". Not an admin-mappable output.
GROUP_FIELD = "group"
WRITTEN_FIELDS = (*SCORE_FIELDS, GROUP_FIELD)
OWN_PREFIX = "leadbridge_"  # matches HubSpot leadbridge_* and Salesforce Leadbridge_*__c (case-insensitive)
# Fields the platform changes on every write; they say nothing about who changed what.
AUDIT_FIELDS = frozenset({"id", "lastmodifieddate", "systemmodstamp", "lastmodifiedbyid", "createddate",
                          "hs_lastmodifieddate", "lastmodified", "hs_object_id", "hs_updated_by_user_id",
                          "lastvieweddate", "lastreferenceddate"})


class ConnectorError(Exception):
    """A CRM or Slack call failed. `vendor_message` is the vendor's own text, `status` the HTTP status."""

    def __init__(self, message: str, *, vendor: str, status: int | None = None, code: str | None = None,
                 vendor_message: str | None = None) -> None:
        super().__init__(message)
        self.vendor = vendor
        self.status = status
        self.code = code
        self.vendor_message = vendor_message or message


class TransientConnectorError(ConnectorError):
    """Worth retrying later (429, 5xx, timeouts, dropped connections); `retry_after` in seconds when known."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class AuthConnectorError(ConnectorError):
    """Credentials are wrong, expired or lack a scope (401/403): retrying cannot help."""


class PermanentConnectorError(ConnectorError):
    """The request itself is wrong (400/404/409...): retrying the same call cannot help."""


@dataclass(frozen=True, slots=True)
class LeadWithAccount:
    """A lead and the account it belongs to (None when the CRM links none).

    `values` holds the extra properties a read was asked for (the mapped fields of the feature schema), under
    the names asked for, None where the record holds no value; `object_type` is the record's canonical type
    (contact, lead) and `changed_at` its last modification, the time those values are known to hold.
    """

    lead: Lead
    account: Account | None
    values: Mapping[str, Any] = field(default_factory=dict)
    object_type: str = ""
    changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """One CRM record as a backfill lists it: field values under the vendor's names (as webhooks carry them).

    `object_type` is canonical (contact, company, deal / lead, contact, account, opportunity); `links`
    maps a linked object type to the linked ids, the primary link first.
    """

    crm: str
    object_type: str
    id: str
    properties: Mapping[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    links: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Properties whose value history was read: (when it was set, value), oldest first ("" = cleared).
    history: Mapping[str, tuple[tuple[datetime, Any], ...]] = field(default_factory=dict)

    def linked(self, object_type: str, by_id: Mapping[tuple[str, str], CrmRecord]) -> CrmRecord | None:
        """The record of `object_type` this one links to first (its primary link), if it was fetched."""
        ids = self.links.get(object_type, ())
        return by_id.get((object_type, ids[0])) if ids else None


class Progress(Protocol):
    """Where a backfill reports how far it got (the CLI draws rich progress bars)."""

    def stage(self, name: str, total: int | None = None) -> None:
        """A stage starts; `total` units when known."""

    def advance(self, name: str, units: int = 1) -> None:
        """`units` more of a stage are done."""


class SilentProgress:
    """A Progress that reports nothing."""

    def stage(self, name: str, total: int | None = None) -> None:
        """Ignore a stage start."""

    def advance(self, name: str, units: int = 1) -> None:
        """Ignore progress."""


@dataclass
class History:
    """What the CRM holds: its records (all kinds) and its won/lost outcomes keyed by CRM lead id."""

    crm: str
    records: list[CrmRecord] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, object_type: str) -> int:
        """How many records of one canonical object type were fetched."""
        return sum(1 for r in self.records if r.object_type == object_type)

    def drain(self, pages: Iterator[list[CrmRecord]], stage: str, progress: Progress) -> list[CrmRecord]:
        """Add every page of records to the history, reporting each page; returns the records read."""
        out: list[CrmRecord] = []
        for page in pages:
            out.extend(page)
            progress.advance(stage, len(page))
        self.records.extend(out)
        return out


@dataclass(frozen=True, slots=True)
class PropertyInfo:
    """One CRM property (HubSpot) or field (Salesforce) as discovery shows it, with what a sample of records held.

    `crm_type` is the vendor's own type (HubSpot `type`, Salesforce describe `type`), `field_type` its display
    hint (HubSpot `fieldType`, Salesforce `soapType`); `references` names what an id or lookup points to
    (Salesforce `referenceTo`, HubSpot `referencedObjectType`, e.g. OWNER). The sample counts are zero until
    `with_sample` fills them.
    """

    crm: str
    object_type: str
    name: str
    label: str
    crm_type: str
    field_type: str = ""
    custom: bool = False
    read_only: bool = False
    calculated: bool = False
    unique: bool = False
    options: int = 0  # enumeration options / active picklist values
    references: str = ""
    sampled: int = 0  # records in the sample
    filled: int = 0  # of them, records with a value
    distinct: int = 0  # distinct values among the filled ones
    numeric: int = 0  # filled values that read as numbers
    multiword: int = 0  # filled values with a space in them (free text rather than codes)

    @property
    def fill_rate(self) -> float | None:
        """Share of sampled records with a value (None when no record was sampled)."""
        return self.filled / self.sampled if self.sampled else None


def is_blank(value: Any) -> bool:
    """True for a value that says nothing: None, or an empty or all-space string."""
    return value is None or (isinstance(value, str) and not value.strip())


def with_sample(info: PropertyInfo, values: Sequence[Any]) -> PropertyInfo:
    """`info` with the counts of one property's values across a sample of records (one value per record)."""
    filled = [v for v in values if not is_blank(v)]
    texts = [str(v).strip() for v in filled]
    return replace(info, sampled=len(values), filled=len(filled), distinct=len(set(texts)),
                   numeric=sum(1 for v in filled if _reads_as_number(v)),
                   multiword=sum(1 for t in texts if " " in t))


def sampled_properties(infos: Sequence[PropertyInfo], records: Sequence[Mapping[str, Any]],
                       names: set[str]) -> list[PropertyInfo]:
    """Each property with its sample counts across `records`; properties not in `names` were not read, as is."""
    return [with_sample(p, [r.get(p.name) for r in records]) if p.name in names else p for p in infos]


def _reads_as_number(value: Any) -> bool:
    if isinstance(value, bool):  # a Salesforce checkbox is a bool, and a bool is an int
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of a batch write: ids written, and ids refused with the vendor's reason."""

    written: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    calls: int = 0  # API requests spent


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A custom field leadbridge needs, with what the vendor needs to create it."""

    object_type: str  # contacts/companies (HubSpot) or Lead/Contact/Account (Salesforce)
    name: str
    label: str
    field_type: str  # vendor type (number, string, datetime / Number, Text, LongTextArea, DateTime)
    metadata: Mapping[str, Any] = field(default_factory=dict)  # the vendor create payload

    @property
    def full_name(self) -> str:
        """Object-qualified name, e.g. `contacts.leadbridge_score` or `Lead.Leadbridge_Score__c`."""
        return f"{self.object_type}.{self.name}"


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What provisioning found: fields created now, fields already there, fields still missing or unusable."""

    created: tuple[str, ...] = ()
    existing: tuple[str, ...] = ()
    missing: tuple[FieldSpec, ...] = ()
    problems: tuple[str, ...] = ()  # e.g. "Lead.Leadbridge_Score__c exists but is not updateable"

    @property
    def ok(self) -> bool:
        """True when every field exists and is writable."""
        return not self.missing and not self.problems


class CallPolicy:
    """What every CRM connector keeps beside its SDK client: the shared rate-limit bucket, its retry budget,
    the calls it made and the admin's field mapping."""

    def set_call_policy(self, limiter: Any, retry_attempts: int, retry_max_elapsed: float,
                        sleep: Callable[[float], None]) -> None:
        """Set the rate limiter and retry budget of this connector's vendor calls; count calls from zero."""
        self.limiter = limiter
        self.retry_attempts = retry_attempts
        self.retry_max_elapsed = retry_max_elapsed
        self.sleep = sleep
        self.calls = 0
        self.field_names: dict[str, str] = {}  # output -> CRM field, from the admin's field mappings


@runtime_checkable
class CrmConnector(Protocol):
    """What the pipeline needs from a CRM."""

    crm: str
    write_batch: int  # records the writeback hands one write_fields call
    field_names: dict[str, str]  # output -> CRM field, from the admin's field mappings ('' = not written)
    sql_rules: dict[str, tuple[str, ...]]  # stage field -> values that mean sales qualified (scoring.activity)

    def read_leads(self, lead_ids: Sequence[str],
                   properties: Mapping[str, Sequence[str]] | None = None) -> list[LeadWithAccount]:
        """Read leads by CRM id, each with its account; unknown ids are left out.

        `properties` (object type as in fields.FEATURE_OBJECTS -> property names) are read in the same calls
        and returned as each lead's `values`.
        """
        ...

    def write_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> WriteResult:
        """Write canonical score fields (see SCORE_FIELDS) for many leads, batched per vendor limits."""
        ...

    def shows_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """The record ids among `updates` whose CRM fields already show those values (scored_at aside)."""
        ...

    def write_account_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> WriteResult:
        """Write canonical score fields for many accounts (HubSpot companies, Salesforce Accounts)."""
        ...

    def shows_account_fields(self, updates: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """The account ids among `updates` whose CRM fields already show those values (scored_at aside)."""
        ...

    def is_account_id(self, record_id: str) -> bool:
        """Whether `record_id` can name an account in this CRM (the account rows may hold other ids)."""
        ...

    def read_outcomes(self, since: datetime | None = None) -> list[Outcome]:
        """Read won/lost outcomes that changed since `since` (all when None)."""
        ...

    def provision_fields(self, create: bool = True) -> ProvisionReport:
        """Check (and, when allowed, create) the custom fields leadbridge writes; idempotent."""
        ...

    def rate_limit(self, settings: Settings) -> tuple[str, int, float] | None:
        """(bucket, requests, window seconds) every process calling this CRM account shares, or None."""
        ...

    def discover_properties(self, object_type: str, sample: int = 200) -> list[PropertyInfo]:
        """Every property/field of one object, with fill counts across its newest `sample` records."""
        ...

    def read_activity(self, ids: Sequence[str]) -> dict[str, LeadActivity]:
        """Each lead's touches, stage history and opportunities, by CRM id (batched); unknown ids are left out.

        Activity the integration's own CRM user created is flagged `by_integration`, so it never counts as a touch.
        """
        ...

    def run_action(self, action: Action, target: ActionTarget, key: str) -> ActionResult:
        """Carry out one CRM rule action (crm_task, crm_owner, crm_list, crm_sequence) once for idempotency `key`.

        A retry after a lost response finds what the first call made and answers status "exists". Raises
        TransientConnectorError for 429/5xx/timeouts (with retry_after), PermanentConnectorError or
        AuthConnectorError with a clear message for 4xx: a deleted or inactive owner, a deleted queue, a list
        that cannot take members, a missing scope or seat (403).
        """
        ...


def tier_of(score: int | None) -> str | None:
    """Priority tier shown next to the score: hot (>= 75), warm (>= 40), cold."""
    if score is None:
        return None
    return "hot" if score >= 75 else "warm" if score >= 40 else "cold"


def shown_values(score: int, grade: str | None, reasons: Sequence[str] | None, model_version: str | None,
                 scored_at: Any) -> dict[str, Any]:
    """The canonical field values a CRM record shows for a lead's or an account's score (for write_fields)."""
    return {"score": score, "grade": grade, "reasons": list(reasons or []), "tier": tier_of(score),
            "model_version": model_version, "scored_at": scored_at}


def with_group(shown: dict[str, Any], group: str | None, hidden: bool) -> dict[str, Any]:
    """What a lead's record shows in a pilot: its values and its group; a held-back control lead's group alone."""
    if group is None:
        return shown
    if hidden:
        return {GROUP_FIELD: group}
    return {**shown, GROUP_FIELD: group}


def filled_traits(traits: Mapping[str, Any]) -> dict[str, Any]:
    """The traits that have a value (None and "" say nothing about a company)."""
    return {k: v for k, v in traits.items() if v not in (None, "")}


def reasons_text(reasons: Any, limit: int) -> str:
    """Render reasons as one line per reason, cut to `limit` characters on a line boundary."""
    if reasons is None:
        return ""
    lines = [str(r) for r in reasons] if isinstance(reasons, (list, tuple)) else [str(reasons)]
    out: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + (1 if out else 0) > limit:
            break
        out.append(line)
        size += len(line) + (1 if len(out) > 1 else 0)
    return "\n".join(out)


def same_field_value(shown: Any, sent: Any) -> bool:
    """True when a value the CRM shows is the one we sent, across the vendors' renderings (87 vs "87.0", "" vs None)."""
    if shown == sent:
        return True
    if shown in (None, "") and sent in (None, ""):
        return True
    try:
        return float(shown) == float(sent)
    except (TypeError, ValueError):
        return str(shown).strip().lower() == str(sent).strip().lower()


def comparable_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The score fields that say what a record shows: scored_at changes on every score, so it is left out."""
    return {k: v for k, v in values.items() if k != "scored_at"}


def unknown_fields(values: Mapping[str, Any]) -> list[str]:
    """Return keys that are not canonical fields leadbridge writes (score fields and the group)."""
    return [k for k in values if k not in WRITTEN_FIELDS]


def mapped_fields(values: Mapping[str, Any], field_names: Mapping[str, str], defaults: Mapping[str, str],
                  vendor: str) -> list[tuple[str, str, Any]]:
    """(canonical key, CRM field name, value) for each score value to write; unknown keys are refused."""
    bad = unknown_fields(values)
    if bad:
        raise PermanentConnectorError(f"unknown score field(s) {bad}", vendor=vendor)
    # An admin's field mapping wins over the built-in name; an empty name means "do not write it".
    return [(key, name, value) for key, value in values.items()
            if (name := field_names.get(key, defaults[key]))]


def canonical_fields(properties: Mapping[str, Any], names: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Pick the canonical attributes present in `properties` (vendor names), given one CRM's field table."""
    found: dict[str, Any] = {}
    for attribute, candidates in names.items():
        for name in candidates:
            value = properties.get(name)
            if value not in (None, ""):
                found[attribute] = value
                break
    return found


def is_own_field(name: str, prefix: str = OWN_PREFIX) -> bool:
    """True for a field leadbridge writes (leadbridge_score, Leadbridge_Score__c ...)."""
    return name.lower().startswith(prefix.lower())


def changed_fields_are_ours(changed: Iterable[str], prefix: str = OWN_PREFIX) -> bool:
    """True when every changed field that matters is one of ours (an empty change counts as ours)."""
    relevant = [n for n in changed if n != META_KEY and n.lower() not in AUDIT_FIELDS]
    return all(is_own_field(n, prefix) for n in relevant)


def names_only_own_fields(event: Event, prefix: str = OWN_PREFIX) -> bool:
    """True for a property change whose fields (audit fields aside) are all ours: the echo test from the event alone.

    Creations, deletions and merges are never echoes; an event naming no field tells us nothing.
    """
    if event.event_type != "property_change":
        return False
    props = {k: v for k, v in event.properties.items() if k != META_KEY}
    if not any(k.lower() not in AUDIT_FIELDS for k in props):
        return False  # let ingest look at it
    return changed_fields_are_ours(props, prefix)


@dataclass
class ActivityBuilder:
    """Collects what a CRM's reads say about each lead's activity, then hands out LeadActivity, oldest first."""

    integration_user_id: str | None = None
    touches: dict[str, list[Touch]] = field(default_factory=dict)
    stages: dict[str, list[StageChange]] = field(default_factory=dict)
    opportunities: dict[str, dict[str, Opportunity]] = field(default_factory=dict)

    def is_ours(self, user_id: Any) -> bool:
        """Whether `user_id` is the CRM user leadbridge works as (ids compared as text)."""
        return self.integration_user_id is not None and user_id is not None and str(user_id) == str(
            self.integration_user_id)

    def touch(self, lead_id: str, at: datetime | None, kind: str, owner_id: Any, created_by: Any) -> None:
        """One touch of a lead, when its time is known; made by the integration's user it is flagged as ours."""
        if at is not None:
            owner = None if owner_id in (None, "") else str(owner_id)
            self.touches.setdefault(lead_id, []).append(Touch(at, kind, owner, self.is_ours(created_by)))

    def stage(self, lead_id: str, at: datetime | None, name: str, value: Any) -> None:
        """A stage field of a lead (or of its opportunity) took `value` at `at` (empty values say nothing)."""
        if at is not None and value not in (None, ""):
            self.stages.setdefault(lead_id, []).append(StageChange(at, name, str(value)))

    def opportunity(self, lead_id: str, opportunity: Opportunity) -> None:
        """An opportunity the lead is on (once per id)."""
        self.opportunities.setdefault(lead_id, {})[opportunity.id] = opportunity

    def build(self, lead_id: str, created_at: datetime | None, owner_id: Any) -> LeadActivity:
        """The lead's activity, each list in time order."""
        def when(item: Touch | StageChange) -> datetime:
            return item.at

        opportunities = sorted(self.opportunities.get(lead_id, {}).values(),
                               key=lambda o: (o.created_at is None, o.created_at or datetime.max, o.id))
        return LeadActivity(lead_id, tuple(sorted(self.touches.get(lead_id, []), key=when)),
                            tuple(sorted(self.stages.get(lead_id, []), key=when)), tuple(opportunities),
                            created_at, None if owner_id in (None, "") else str(owner_id))


def amount_of(value: Any) -> float | None:
    """A CRM amount as a number (HubSpot sends text, Salesforce a number; blank or unreadable is None)."""
    if value in (None, "") or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_time(value: Any) -> datetime | None:
    """A CRM time as an aware datetime: epoch milliseconds, ISO 8601 (Z, +00:00 or +0000) or a date (midnight UTC)."""
    if value in (None, "") or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text.replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
