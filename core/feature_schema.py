"""The feature schema as values: which CRM properties an admin mapped to model features, and how.

A `MappedField` says "HubSpot contact property `budget` is the numeric feature `budget`"; a
`FeatureSchema` is one saved version of all of them. These are plain values so every layer can hold
them: storage saves and loads them (storage.feature_schema), scoring derives feature values from them
(scoring.schema, which re-exports these names), the pipeline reloads them when the version changes.

The names of the built-in features live here too (`BUILTIN_FEATURE_NAMES`), because a mapped feature
must not take one and storage may not import scoring to ask; tests/scoring/test_schema.py pins this
tuple to scoring.features.FEATURE_NAMES, so a new declared feature fails that test until added here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

FieldKind = Literal["numeric", "categorical", "boolean", "date", "text"]
FIELD_KINDS: tuple[str, ...] = get_args(FieldKind)
DEFAULT_TOP_N = 20
MAX_TOP_N = 500
FEATURE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
FEATURE_NAME_RULE = "must start with a-z and hold only a-z, 0-9 and _ (at most 64 characters)"
MAX_PROPERTY = 100
MAX_LABEL = 200
# Stored traits of mapped fields are named TRAIT_PREFIX + feature in the online store's traits hash.
TRAIT_PREFIX = "f:"

_WINDOWS = ("1d", "7d", "30d")
_STREAMS = ("pricing_views", "docs_views", "case_studies_views", "careers_views", "blog_views", "other_views",
            "sessions", "email_opens", "email_clicks", "downloads", "webinars", "form_fills", "demo_requests")
BUILTIN_FEATURE_NAMES: tuple[str, ...] = (
    *(f"{stream}_{window}" for stream in _STREAMS for window in _WINDOWS),
    "days_since_last_activity", "engagement_decay", "employees_bucket", "industry", "country", "seniority",
    "email_domain_type", "account_engaged_contacts_7d",
)


class SchemaError(ValueError):
    """A feature schema (or one field of it) is not acceptable; the message names the problem."""


def object_key(object_type: str) -> str:
    """How object types compare: case-insensitive, singular ("contacts", "Contact", "contact" are one)."""
    key = object_type.strip().lower()
    return key[:-1] if key.endswith("s") else key


def default_feature(prop: str) -> str:
    """The feature name a property gets unless the admin names one: its internal name, lower-cased."""
    return prop.strip().lower()


@dataclass(frozen=True)
class MappedField:
    """One CRM property used as a model feature."""

    crm: str  # "hubspot" | "salesforce"
    object_type: str  # "contacts" (HubSpot); "Lead" or "Contact" (Salesforce)
    property: str  # the property's internal (API) name
    kind: FieldKind
    feature: str  # the column name the model sees
    label: str = ""  # the property's label in the CRM (CSV exports use it as the header)
    fit: bool = False  # describes who the lead is: also trains the fit (grade) model
    top_n: int = DEFAULT_TOP_N  # categorical: the most frequent levels kept, the rest become "other"

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (stored in the schema table and in model metadata)."""
        return {"crm": self.crm, "object_type": self.object_type, "property": self.property, "kind": self.kind,
                "feature": self.feature, "label": self.label, "fit": self.fit, "top_n": self.top_n}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MappedField:
        """Inverse of `to_json` (the feature defaults to the property's name, lower-cased)."""
        prop = str(data["property"])
        return cls(crm=str(data["crm"]), object_type=str(data["object_type"]), property=prop,
                   kind=data["kind"], feature=str(data.get("feature") or default_feature(prop)),
                   label=str(data.get("label") or ""), fit=bool(data.get("fit", False)),
                   top_n=data.get("top_n", DEFAULT_TOP_N))

    @property
    def source(self) -> tuple[str, str, str]:
        """(crm, object key, property lower-cased): the record field this feature is read from."""
        return self.crm.lower(), object_key(self.object_type), self.property.lower()

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """What a model trained on this field depends on: its source, kind and feature name."""
        return (*self.source, self.kind, self.feature)


@dataclass(frozen=True)
class FeatureSchema:
    """One version of the mapped fields (version 0 with no fields: nothing mapped, the built-ins only)."""

    version: int
    fields: tuple[MappedField, ...] = field(default_factory=tuple)

    @classmethod
    def empty(cls) -> FeatureSchema:
        """No mapped fields: the built-in features only."""
        return cls(0, ())

    @cached_property
    def mapped_features(self) -> tuple[str, ...]:
        """The mapped feature names, in field order, each once."""
        return tuple(dict.fromkeys(f.feature for f in self.fields))

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature a vector holds: the built-ins, then the mapped ones."""
        return (*BUILTIN_FEATURE_NAMES, *self.mapped_features)

    @cached_property
    def _by_source(self) -> dict[tuple[str, str, str], MappedField]:
        return {f.source: f for f in self.fields}

    @cached_property
    def _by_feature(self) -> dict[str, MappedField]:
        out: dict[str, MappedField] = {}
        for f in self.fields:
            out.setdefault(f.feature, f)
        return out

    @cached_property
    def _by_name(self) -> dict[str, MappedField]:
        # Behavioural identify traits name a field by its property or its feature, whatever the CRM.
        out: dict[str, MappedField] = {}
        for f in self.fields:
            out.setdefault(f.property.lower(), f)
        for f in self.fields:
            out.setdefault(f.feature, f)
        return out

    def properties_of(self, crm: str, object_type: str) -> list[str]:
        """The mapped property names of one CRM object (what an enrichment read must ask for)."""
        key = (crm.lower(), object_key(object_type))
        return [f.property for f in self.fields if f.source[:2] == key]

    def field_for(self, crm: str, object_type: str, prop: str) -> MappedField | None:
        """The field mapping `prop` of `crm`'s `object_type` (case-insensitive), if any."""
        return self._by_source.get((crm.lower(), object_key(object_type), prop.lower()))

    def field_named(self, name: str) -> MappedField | None:
        """The field whose property or feature is `name` (case-insensitive), whatever the CRM."""
        return self._by_name.get(name.lower())

    def field_of_feature(self, feature: str) -> MappedField | None:
        """The (first) field that feeds `feature`."""
        return self._by_feature.get(feature)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of what a model depends on (each field's source, kind and feature; not labels or fit flags)."""
        payload = json.dumps(sorted(f.identity for f in self.fields), separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"version": self.version, "fingerprint": self.fingerprint, "fields": [f.to_json() for f in self.fields]}

    def missing_for(self, used: Iterable[MappedField]) -> list[str]:
        """Why a model that reads the `used` fields cannot serve under this schema (empty: it can)."""
        have = {f.identity for f in self.fields}
        problems = []
        for f in used:
            if f.identity in have:
                continue
            current = self.field_of_feature(f.feature)
            if current is None:
                problems.append(f"feature {f.feature!r} ({f.crm} {f.object_type}.{f.property}) is not mapped")
            else:
                problems.append(f"feature {f.feature!r} was {f.kind} from {f.crm} {f.object_type}.{f.property}, "
                                f"now {current.kind} from {current.crm} {current.object_type}.{current.property}")
        return problems


def fields_of_model(metadata: Mapping[str, Any]) -> list[MappedField]:
    """The mapped fields a model bundle's metadata says it reads (none for a model of built-ins only)."""
    recorded = metadata.get("feature_schema") or {}
    return [MappedField.from_json(f) for f in recorded.get("fields") or []]


def serving_problems(schema: FeatureSchema, metadata: Mapping[str, Any]) -> list[str]:
    """Why the model with this bundle metadata cannot serve under `schema` (empty: it can).

    It can when every mapped field it was trained on is mapped alike now, and every column it reads is a
    built-in or mapped feature (the online store holds nothing else).
    """
    used = fields_of_model(metadata)
    problems = schema.missing_for(used)
    columns = [*((metadata.get("main") or {}).get("input_columns") or []),
               *((metadata.get("fit") or {}).get("input_columns") or [])]
    recorded = {f.feature for f in used}  # problems with these are reported above
    unknown = [c for c in dict.fromkeys(columns) if c not in recorded and c not in schema.feature_names]
    if unknown:
        problems.append(f"it reads column(s) the online store does not hold: {', '.join(unknown[:8])}")
    # A column that is a mapped feature now, but was not one when the model learned it, means something else.
    unrecorded = [c for c in dict.fromkeys(columns) if c not in recorded and c in schema.mapped_features]
    if unrecorded:
        problems.append(f"it was not trained on the mapped feature(s) {', '.join(unrecorded[:8])} but reads a "
                        "column of that name")
    return problems


def check_field(f: MappedField) -> None:
    """Refuse a field whose parts are malformed (SchemaError naming the part)."""
    where = f"{f.crm} {f.object_type}.{f.property}"
    for name, value in (("crm", f.crm), ("object type", f.object_type), ("property", f.property)):
        if not isinstance(value, str) or not value.strip():
            raise SchemaError(f"{name} is missing")
        if value != value.strip() or any(c.isspace() for c in value):
            raise SchemaError(f"{name} {value!r} must not contain spaces")
    if len(f.property) > MAX_PROPERTY:
        raise SchemaError(f"property {f.property[:40]!r}... is longer than {MAX_PROPERTY} characters")
    if f.kind not in FIELD_KINDS:
        raise SchemaError(f"{where}: unknown kind {f.kind!r}; use one of {', '.join(FIELD_KINDS)}")
    if not isinstance(f.feature, str) or not FEATURE_NAME.match(f.feature):
        raise SchemaError(f"{where}: feature name {f.feature!r} {FEATURE_NAME_RULE}")
    if f.feature in BUILTIN_FEATURE_NAMES:
        raise SchemaError(f"{where}: feature name {f.feature!r} is a built-in feature; choose another with --feature")
    if isinstance(f.top_n, bool) or not isinstance(f.top_n, int) or not 1 <= f.top_n <= MAX_TOP_N:
        raise SchemaError(f"{where}: top_n must be a whole number from 1 to {MAX_TOP_N}, not {f.top_n!r}")
    if not isinstance(f.label, str) or len(f.label) > MAX_LABEL:
        raise SchemaError(f"{where}: the label must be text of at most {MAX_LABEL} characters")
    if not isinstance(f.fit, bool):
        raise SchemaError(f"{where}: fit must be true or false")


def check_fields(fields: Sequence[MappedField]) -> None:
    """Refuse a set of fields that is malformed or ambiguous (SchemaError naming the first problem).

    One record field maps to one feature; one feature may be fed by the same-named field of several
    objects (a Salesforce Lead's and Contact's `Budget__c`, say) only with the same kind and top_n,
    and never by two fields of one object (which of them would be "latest"?).
    """
    sources: dict[tuple[str, str, str], MappedField] = {}
    features: dict[str, MappedField] = {}
    for f in fields:
        check_field(f)
        if f.source in sources:
            raise SchemaError(f"{f.crm} {f.object_type}.{f.property} is mapped twice")
        sources[f.source] = f
        other = features.get(f.feature)
        if other is not None:
            if other.source[:2] == f.source[:2]:
                raise SchemaError(f"duplicate feature {f.feature!r}: both {other.property} and {f.property} of "
                                  f"{f.crm} {f.object_type} feed it")
            if (other.kind, other.top_n) != (f.kind, f.top_n):
                raise SchemaError(f"duplicate feature {f.feature!r}: {other.crm} {other.object_type}.{other.property} "
                                  f"is {other.kind} (top_n {other.top_n}) but {f.crm} {f.object_type}.{f.property} "
                                  f"is {f.kind} (top_n {f.top_n})")
        else:
            features[f.feature] = f
