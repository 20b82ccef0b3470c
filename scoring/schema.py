"""Mapped CRM fields as features: the schema values (core.feature_schema) and how a stored value becomes
a feature value.

A mapped value is stored as text, exactly as the CRM sent it (trait `f:<feature>`, "latest wins" like
every trait). What the model sees is derived when a vector is read, by `derive`, the one function the
offline builder, the online store and CSV training all call:
- numeric: the number (commas allowed); unparseable, NaN or infinite -> missing;
- categorical: the trimmed text (the model's Preprocessor keeps the field's top_n levels + "other");
- boolean: "true" / "false" from yes/no, true/false, y/n, 1/0 (any case); anything else -> missing;
- date: age in days (to 0.01) at the vector's as-of time, from an ISO-8601 date or date-time (no zone
  means UTC) or epoch milliseconds (HubSpot's date properties); negative for a date in the future;
- text: its length in characters.
An empty or absent value is missing for every kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from core.feature_schema import (
    BUILTIN_FEATURE_NAMES,
    DEFAULT_TOP_N,
    FIELD_KINDS,
    TRAIT_PREFIX,
    FeatureSchema,
    FieldKind,
    MappedField,
    SchemaError,
    check_field,
    check_fields,
    default_feature,
    object_key,
)

__all__ = ["BUILTIN_FEATURE_NAMES", "DEFAULT_TOP_N", "FIELD_KINDS", "TRAIT_PREFIX", "FeatureSchema", "FieldKind",
           "MappedField", "SchemaError", "check_field", "check_fields", "default_feature", "derive",
           "model_kinds", "object_key", "parse_date_ms", "stored_text", "trait_name"]

DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TRUE_TEXT = frozenset({"true", "yes", "y", "1"})
FALSE_TEXT = frozenset({"false", "no", "n", "0"})
# Epoch values below this are seconds, not milliseconds (1e11 ms is March 1973; 1e11 s is year 5138).
_SECONDS_BELOW = 100_000_000_000
# How the model's Preprocessor treats each kind's derived values.
_MODEL_KIND = {"numeric": "numeric", "categorical": "categorical", "boolean": "boolean", "date": "numeric",
               "text": "numeric"}


def trait_name(feature: str) -> str:
    """The online store's trait field that holds a mapped feature's raw value."""
    return TRAIT_PREFIX + feature


def stored_text(value: Any) -> str | None:
    """The text a raw CRM value is stored as ("" for a cleared value); None for values that are no field value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None  # compound values (an address) are not one field's value


def parse_date_ms(value: Any) -> int | None:
    """Epoch milliseconds of an ISO-8601 date/date-time or an epoch-ms number; None when it is neither."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if not text:
            return None
        if text.lstrip("-").isdigit():
            number = int(text)
            return number * 1000 if abs(number) < _SECONDS_BELOW else number
        try:
            moment = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _number(text: str) -> float | None:
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def derive(kind: str, raw: Any, as_of_ms: int | None = None) -> Any:
    """The feature value of a stored raw value (see the module docstring); None when missing.

    `as_of_ms` (epoch ms) is required for dates: their value is their age at that instant.
    """
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    text = raw.strip() if isinstance(raw, str) else stored_text(raw)
    if not text:
        return None
    if kind == "numeric":
        return _number(text)
    if kind == "categorical":
        return text
    if kind == "boolean":
        word = text.lower()
        return "true" if word in TRUE_TEXT else "false" if word in FALSE_TEXT else None
    if kind == "date":
        if as_of_ms is None:
            raise ValueError("a date feature needs the as-of time of its vector")
        ms = parse_date_ms(text)
        return None if ms is None else round((as_of_ms - ms) / DAY_MS, 2)
    if kind == "text":
        return len(text)
    raise SchemaError(f"unknown kind {kind!r}")


def mapped_values(schema: FeatureSchema, traits: Mapping[str, str], as_of_ms: int,
                  names: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """Each mapped feature's value (of `names`, default all) from a lead's stored traits."""
    out: dict[str, Any] = {}
    for name in names if names is not None else schema.mapped_features:
        f = schema.field_of_feature(name)
        if f is not None:
            out[name] = derive(f.kind, traits.get(TRAIT_PREFIX + name), as_of_ms)
    return out


def model_kinds(schema: FeatureSchema, columns: list[str] | tuple[str, ...] | None = None) -> dict[str, str]:
    """Preprocessor kinds of the mapped features (dates and texts become numbers), for the given columns."""
    wanted = set(columns) if columns is not None else None
    return {f: _MODEL_KIND[schema.field_of_feature(f).kind]  # type: ignore[union-attr]
            for f in schema.mapped_features if wanted is None or f in wanted}


def max_levels(schema: FeatureSchema) -> dict[str, int]:
    """Each categorical mapped feature's top_n, the Preprocessor's level cap for that column."""
    return {f.feature: f.top_n for f in schema.fields if f.kind == "categorical"}


def used_fields(schema: FeatureSchema, columns: list[str] | tuple[str, ...]) -> list[MappedField]:
    """Every field of `schema` that feeds one of `columns` (what a model reading those columns depends on)."""
    wanted = set(columns)
    return [f for f in schema.fields if f.feature in wanted]
