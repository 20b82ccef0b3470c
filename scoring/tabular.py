"""Tabular preprocessing: column type inference, category cleaning and the model's numeric matrix.

A `Preprocessor` is fitted once on training rows and stored as plain JSON next to the model, so the
exact same cleaning (missing tokens, boolean mapping, rare-level merging, date parts) is applied when
the bundle is loaded again in another process.

Type inference, per column, on the training rows only:
- *boolean*: every non-missing value (trimmed, case-insensitive) is one of yes/no, true/false, y/n, t/f;
- *numeric*: a numeric dtype, or text of which at least 98% of the non-missing values parse as numbers;
- *date*: text of which at least 90% parses as a date and that contains a date separator ("-", "/");
  it becomes three numeric parts: day of week, month and (when any value has a time) hour of day;
- *categorical*: everything else. Levels seen fewer than `min_level_count` times (or beyond the
  `max_levels` most frequent) merge into one "other" level; missing stays missing (XGBoost learns a
  default branch for it), so "missing" is a signal of its own rather than an imputed guess.
Columns that carry no signal are dropped and reported: constant columns and identifier-like text
(nearly every value unique).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from scoring import phrasing
from scoring.phrasing import humanise

Kind = Literal["numeric", "boolean", "categorical", "date"]

# Values that mean "nobody filled this in". "Select" is the label of an untouched form dropdown,
# which CRM exports keep as text; pandas already reads "", "NA", "N/A", "null" as missing.
DEFAULT_MISSING_TOKENS: tuple[str, ...] = ("", "Select", "-- Select --", "--None--", "N/A", "NA", "null", "NULL")
OTHER_LEVEL = "(other)"
TRUE_WORDS = frozenset({"yes", "true", "y", "t"})
FALSE_WORDS = frozenset({"no", "false", "n", "f"})
_DATE_SEPARATOR = re.compile(r"\d[-/]\d|\d{4}-\d{2}")
_UNSAFE_NAME = re.compile(r"[\[\]<,]")


@dataclass(frozen=True)
class ColumnSpec:
    """How one input column is turned into model features."""

    name: str
    kind: Kind
    levels: tuple[str, ...] = ()  # categorical: kept levels; OTHER_LEVEL is always the last code
    date_parts: tuple[str, ...] = ()  # date: which parts become features ("dow", "month", "hour")

    def feature_names(self) -> list[str]:
        """Names of the model features this column produces."""
        if self.kind == "date":
            return [f"{self.name} ({part})" for part in self.date_parts]
        return [self.name]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form of this spec."""
        return {"name": self.name, "kind": self.kind, "levels": list(self.levels), "date_parts": list(self.date_parts)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ColumnSpec:
        """Inverse of `to_json`."""
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            levels=tuple(data.get("levels", ())),
            date_parts=tuple(data.get("date_parts", ())),
        )


def clean_missing(frame: pd.DataFrame, tokens: Iterable[str] = DEFAULT_MISSING_TOKENS) -> pd.DataFrame:
    """Return a copy where text cells equal (after trimming) to a missing token become NaN."""
    token_set = {t.strip() for t in tokens}
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if _is_text(series):
            stripped = series.astype("object").where(series.isna(), series.astype(str).str.strip())
            out[col] = stripped.where(~stripped.isin(token_set), np.nan)
    return out


def _is_text(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_datetime64_any_dtype(series)


def _to_number(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    text = series.astype("object").where(series.isna(), series.astype(str).str.replace(",", "", regex=False))
    return pd.to_numeric(text, errors="coerce").astype(float)


def _to_datetime(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    return pd.to_datetime(series, errors="coerce", format="mixed", utc=True)


def infer_kind(series: pd.Series) -> Kind:
    """Infer whether a (missing-cleaned) column is numeric, boolean, date or categorical."""
    values = series.dropna()
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "date"
    if values.empty:
        return "categorical"
    words = set(values.astype(str).str.strip().str.lower().unique())
    if words and words <= (TRUE_WORDS | FALSE_WORDS) and len(words) <= 2:
        return "boolean"
    numbers = _to_number(values)
    if numbers.notna().mean() >= 0.98:
        return "numeric"
    text = values.astype(str)
    if text.str.contains(_DATE_SEPARATOR).mean() >= 0.9:
        with np.errstate(all="ignore"):
            parsed = _to_datetime(text)
        if parsed.notna().mean() >= 0.9:
            return "date"
    return "categorical"


def _boolean_values(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    words = series.astype("object").where(series.isna(), series.astype(str).str.strip().str.lower())
    out = pd.Series(np.nan, index=series.index, dtype=float)
    out[words.isin(TRUE_WORDS)] = 1.0
    out[words.isin(FALSE_WORDS)] = 0.0
    return out


def safe_feature_name(name: str) -> str:
    """XGBoost rejects '[', ']', '<' and ',' in feature names; replace them."""
    return _UNSAFE_NAME.sub("_", name)


@dataclass
class Preprocessor:
    """Fitted column specs plus the settings needed to replay the cleaning on new rows."""

    columns: list[ColumnSpec]
    missing_tokens: tuple[str, ...] = DEFAULT_MISSING_TOKENS
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it was dropped

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        *,
        missing_tokens: Sequence[str] = DEFAULT_MISSING_TOKENS,
        min_level_count: int | None = None,
        max_levels: int = 50,
        kinds: Mapping[str, Kind] | None = None,
        column_max_levels: Mapping[str, int] | None = None,
    ) -> Preprocessor:
        """Infer column kinds and vocabularies from training rows (labels are never looked at).

        `kinds` fixes a column's kind instead of inferring it; `column_max_levels` caps one categorical
        column's kept levels (a mapped field's top_n) instead of `max_levels`.
        """
        cleaned = clean_missing(frame, missing_tokens)
        n = len(cleaned)
        # Rare levels: fewer than ~0.25% of rows (at least 5) can't be learned reliably; merging them
        # stops the trees from memorising a handful of rows and keeps the vocabulary stable over time.
        min_count = min_level_count if min_level_count is not None else max(5, math.ceil(0.0025 * n))
        specs: list[ColumnSpec] = []
        dropped: dict[str, str] = {}
        for col in cleaned.columns:
            series = cleaned[col]
            kind = (kinds or {}).get(col) or infer_kind(series)
            non_missing = series.dropna()
            if non_missing.empty:
                dropped[col] = "empty"
                continue
            if kind == "categorical":
                text = non_missing.astype(str)
                counts = text.value_counts()
                cap = (column_max_levels or {}).get(col, max_levels)
                if n >= 50 and counts.size >= 0.95 * len(text) and counts.size > cap:
                    dropped[col] = "identifier-like (nearly every value unique)"
                    continue
                kept = [str(v) for v, c in counts.items() if c >= min_count][:cap]
                has_other = len(kept) < counts.size
                has_missing = len(non_missing) < n
                if len(kept) + int(has_other) + int(has_missing) <= 1:
                    dropped[col] = "constant"
                    continue
                specs.append(ColumnSpec(col, "categorical", levels=tuple(sorted(kept))))
            elif kind == "date":
                parsed = _to_datetime(non_missing)
                parts = ["dow", "month"]
                if ((parsed.dt.hour != 0) | (parsed.dt.minute != 0)).any():
                    parts.append("hour")
                specs.append(ColumnSpec(col, "date", date_parts=tuple(parts)))
            else:
                values = _boolean_values(series) if kind == "boolean" else _to_number(series)
                if values.dropna().nunique() <= 1 and values.notna().all():
                    dropped[col] = "constant"
                    continue
                specs.append(ColumnSpec(col, kind))
        return cls(columns=specs, missing_tokens=tuple(missing_tokens), dropped=dropped)

    # ---- outputs -------------------------------------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        """Model feature names, in matrix column order."""
        return [name for spec in self.columns for name in spec.feature_names()]

    @property
    def xgb_feature_names(self) -> list[str]:
        """Feature names made safe for XGBoost."""
        return [safe_feature_name(n) for n in self.feature_names]

    @property
    def feature_types(self) -> list[str]:
        """XGBoost feature types: 'c' for categorical codes, 'q' for numbers."""
        return [("c" if spec.kind == "categorical" else "q") for spec in self.columns for _ in spec.feature_names()]

    @property
    def input_columns(self) -> list[str]:
        """Input columns the preprocessor reads."""
        return [spec.name for spec in self.columns]

    def without(self, names: Iterable[str], reason: str) -> Preprocessor:
        """Return a copy with the given input columns removed and recorded as dropped."""
        gone = set(names)
        dropped = dict(self.dropped)
        dropped.update({n: reason for n in gone})
        return Preprocessor([s for s in self.columns if s.name not in gone], self.missing_tokens, dropped)

    def only(self, names: Iterable[str]) -> Preprocessor:
        """Return a copy that keeps only the given input columns (e.g. the fit-only model's)."""
        keep = set(names)
        return Preprocessor([s for s in self.columns if s.name in keep], self.missing_tokens, {})

    def clean(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Apply missing tokens and the fitted vocabularies; returns one typed column per input column.

        Categorical columns hold the kept level, OTHER_LEVEL, or NaN; numeric and boolean columns hold
        floats; date columns hold UTC timestamps. Columns absent from `frame` come back all-missing.
        """
        cleaned = clean_missing(frame[[c for c in self.input_columns if c in frame.columns]], self.missing_tokens)
        out: dict[str, pd.Series] = {}
        for spec in self.columns:
            series = cleaned[spec.name] if spec.name in cleaned.columns else pd.Series(np.nan, index=frame.index)
            if spec.kind == "categorical":
                text = series.astype("object").where(series.isna(), series.astype(str))
                known = text.isin(set(spec.levels))
                out[spec.name] = text.where(known | text.isna(), OTHER_LEVEL)
            elif spec.kind == "boolean":
                out[spec.name] = _boolean_values(series)
            elif spec.kind == "numeric":
                out[spec.name] = _to_number(series)
            else:
                out[spec.name] = _to_datetime(series)
        return pd.DataFrame(out, index=frame.index)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the float32 model matrix (categorical codes, numbers, NaN for missing)."""
        cleaned = self.clean(frame)
        return self.matrix_from_clean(cleaned)

    def matrix_from_clean(self, cleaned: pd.DataFrame) -> np.ndarray:
        """Build the model matrix from the output of `clean`."""
        blocks: list[np.ndarray] = []
        for spec in self.columns:
            series = cleaned[spec.name]
            if spec.kind == "categorical":
                mapping = {level: i for i, level in enumerate(spec.levels)}
                mapping[OTHER_LEVEL] = len(spec.levels)
                blocks.append(series.map(mapping).astype(float).to_numpy()[:, None])
            elif spec.kind == "date":
                ts = series
                parts = {"dow": ts.dt.day_of_week, "month": ts.dt.month, "hour": ts.dt.hour}
                blocks.append(np.column_stack([parts[p].astype(float).to_numpy() for p in spec.date_parts]))
            else:
                blocks.append(series.astype(float).to_numpy()[:, None])
        if not blocks:
            return np.zeros((len(cleaned), 0), dtype=np.float32)
        return np.hstack(blocks).astype(np.float32)

    def describe_value(self, feature_index: int, value: float, *, label: str | None = None,
                       mapped_kind: str | None = None) -> str:
        """Render one matrix cell as a phrase, e.g. 'lead origin is Lead Add Form' (see scoring.phrasing).

        `label` names the column (default: its humanised name); `mapped_kind` is the feature schema's
        kind when the matrix hides it (a mapped date arrives as its age in days, text as its length).
        """
        spec, part = self.spec_at(feature_index)
        name = label or humanise(spec.name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return phrasing.describe_text(name, None) if mapped_kind == "text" else phrasing.describe_missing(name)
        if spec.kind == "categorical":
            code = int(value)
            if code < len(spec.levels):
                return phrasing.describe_category(name, spec.levels[code])
            return phrasing.describe_category(name, OTHER_LEVEL, rare=True)
        if spec.kind == "date":
            return phrasing.describe_date_part(name, part, float(value))
        if spec.kind == "boolean" or mapped_kind == "boolean":
            return phrasing.describe_boolean(name, float(value))
        if mapped_kind == "date":
            return phrasing.describe_age(name, float(value))
        if mapped_kind == "text":
            return phrasing.describe_text(name, float(value))
        return phrasing.describe_numeric(name, float(value))

    def decode(self, feature_index: int, value: float) -> Any:
        """The input-level value behind a matrix cell: a level string, a number, or None if missing."""
        spec, _ = self.spec_at(feature_index)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if spec.kind == "categorical":
            code = int(value)
            return spec.levels[code] if code < len(spec.levels) else OTHER_LEVEL
        return float(value)

    def spec_at(self, index: int) -> tuple[ColumnSpec, str]:
        """The input column behind matrix column `index`, and its date part ("" unless a date)."""
        i = 0
        for spec in self.columns:
            names = spec.feature_names()
            if index < i + len(names):
                part = spec.date_parts[index - i] if spec.kind == "date" else ""
                return spec, part
            i += len(names)
        raise IndexError(index)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (vocabulary included), stored in the bundle's metadata."""
        return {
            "columns": [s.to_json() for s in self.columns],
            "missing_tokens": list(self.missing_tokens),
            "dropped": dict(self.dropped),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessor:
        """Inverse of `to_json`."""
        return cls(
            columns=[ColumnSpec.from_json(c) for c in data["columns"]],
            missing_tokens=tuple(data.get("missing_tokens", DEFAULT_MISSING_TOKENS)),
            dropped=dict(data.get("dropped", {})),
        )

