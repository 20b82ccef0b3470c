"""Plain-language phrases for one column value, as a reason shows it ("lead source is Reference").

A reason names a column by its label: the mapped field's label when a feature schema gives one,
else the column name made readable ("TotalVisits" -> "total visits", "lead_source" -> "lead
source", "Annual_Revenue__c" -> "annual revenue"). Labels are lower-cased except for acronyms.
The value is shown the way a person would say it, by kind:

| kind        | value             | phrase                                        |
|-------------|-------------------|-----------------------------------------------|
| categorical | Reference         | lead source is Reference                      |
| boolean     | 0                 | do not email is no                            |
| numeric     | 14, "(minutes)"   | 14 minutes on website  (a "time spent" label) |
| numeric     | 5                 | 5 visits               (a count: plural noun) |
| numeric     | 35, "(%)"         | bounce rate is 35%                            |
| numeric     | 2.5               | page views per visit is 2.5                   |
| date (age)  | 12 days           | created 12 days ago                           |
| date (part) | Monday            | created on a Monday                           |
| text        | length 40 / 0     | notes filled in / no notes                    |
| any         | missing           | lead source unknown                           |

A unit is read from the label's end, in parentheses or after "in" ("Time on site (minutes)",
"Revenue in USD"); durations are shown in the largest sensible unit (5,400 seconds -> 90 minutes).
Numbers are rounded for reading: 1,532; 12.5; 2.5; 0.33; 1.2 million.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")

# Unit words as they appear in labels -> the unit a phrase shows.
_UNITS: dict[str, str] = {
    "s": "seconds", "sec": "seconds", "secs": "seconds", "second": "seconds", "seconds": "seconds",
    "min": "minutes", "mins": "minutes", "minute": "minutes", "minutes": "minutes",
    "h": "hours", "hr": "hours", "hrs": "hours", "hour": "hours", "hours": "hours",
    "d": "days", "day": "days", "days": "days",
    "wk": "weeks", "wks": "weeks", "week": "weeks", "weeks": "weeks",
    "month": "months", "months": "months",
    "yr": "years", "yrs": "years", "year": "years", "years": "years",
    "%": "%", "percent": "%", "pct": "%",
    "$": "$", "usd": "USD", "€": "€", "eur": "EUR", "£": "£", "gbp": "GBP",
}
_DURATIONS = ("seconds", "minutes", "hours", "days")
_DURATION_STEP = {"seconds": 60.0, "minutes": 60.0, "hours": 24.0}
_DURATION_UP_FROM = {"seconds": 90.0, "minutes": 120.0, "hours": 48.0}  # 90 s reads better as 1.5 minutes
_PREFIX_CURRENCY = {"$", "€", "£"}
_UNIT_SUFFIX = re.compile(r"\s*(?:\(\s*(?:in\s+)?([^()]+?)\s*\)|\[\s*([^\[\]]+?)\s*\]|\bin\s+(\S+))\s*$", re.I)
_TIME_SPENT = re.compile(r"^(?:total\s+)?time(?:\s+spent)?\b\s*(.*)$")
_COUNT_PREFIX = re.compile(r"^(?:total\s+)?(?:number of|num(?:ber)?|no\.? of|# of|#|count of|count)\s+")
_QUESTION = re.compile(r"^(?:what(?:'s| is| are)|which is) (?:your|the) ")
_QUESTION_START = re.compile(r"^(?:what|which|how|why|when|where|who|do|does|did|are|is|have|has|would|will|can)\b")
_DATE_WORDS = re.compile(r"\s*\b(?:date(?:time)?|time ?stamp|timestamp|time|at|on)\s*$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def humanise(name: str) -> str:
    """A column name as label words: 'TotalVisits' -> 'total visits', 'hs_lead_status' -> 'lead status'."""
    text = re.sub(r"__c$", "", str(name).strip())  # Salesforce custom-field suffix
    text = re.sub(r"^hs_", "", text)  # HubSpot's own-property prefix
    text = _CAMEL.sub(" ", text)
    text = re.sub(r"[_\-.]+", " ", text)
    return tidy_label(text) or str(name)


def tidy_label(label: str) -> str:
    """A label as it reads inside a sentence: words lower-cased, acronyms (CRM, ID, USD) kept."""
    words = str(label).split()
    # Acronyms and single capitals ("X Education", "I agree") keep their case; the article "A" does not.
    out = [w if (w.isupper() and w.isalpha() and w != "A") else w.lower() for w in words]
    return " ".join(out).strip().rstrip("?:").strip()


def split_unit(label: str) -> tuple[str, str | None]:
    """('time on website', 'minutes') from 'time on website (minutes)'; the unit is None when there is none."""
    found = _UNIT_SUFFIX.search(label)
    if found:
        word = next(g for g in found.groups() if g is not None)
        unit = _UNITS.get(word.strip().lower())
        if unit is not None:
            return label[: found.start()].strip(), unit
    return label, None


def format_number(value: float) -> str:
    """A number rounded for reading: 1,532; 12.5; 2.5; 0.33; 1.2 million."""
    v = float(value)
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:,.1f}".rstrip("0").rstrip(".") + " billion"
    if a >= 1e6:
        return f"{v / 1e6:,.1f}".rstrip("0").rstrip(".") + " million"
    if a >= 100 or v.is_integer():
        return f"{round(v):,}"
    if a >= 1:
        text = f"{v:.1f}"
    else:
        text = f"{v:.2g}"
        if "e" in text:
            text = f"{v:.6f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _plural(unit: str, n: float) -> str:
    return unit[:-1] if n == 1 and unit.endswith("s") else unit


def _duration(value: float, unit: str) -> tuple[float, str]:
    """Move a duration up to the largest unit it fills well: 5,400 seconds -> 90 minutes, 72 hours -> 3 days."""
    while unit in _DURATION_STEP and abs(value) >= _DURATION_UP_FROM[unit]:
        value /= _DURATION_STEP[unit]
        unit = _DURATIONS[_DURATIONS.index(unit) + 1]
    return value, unit


def _amount(value: float, unit: str | None) -> str:
    """'14 minutes', '35%', '$1,200', '1.2 million USD', '12' (no unit)."""
    if unit is None:
        return format_number(value)
    if unit in _DURATIONS:
        value, unit = _duration(value, unit)
        # Durations read best as whole numbers once they pass 10 of a unit ("26 minutes", not "25.5").
        shown = format_number(round(value) if abs(value) >= 10 else value)
        return f"{shown} {unit[:-1] if shown == '1' else unit}"
    if unit == "%":
        return f"{format_number(value)}%"
    if unit in _PREFIX_CURRENCY:
        return f"-{unit}{format_number(-value)}" if value < 0 else f"{unit}{format_number(value)}"
    shown = format_number(value)
    return f"{shown} {unit[:-1] if shown == '1' and unit in ('weeks', 'months', 'years') else unit}"


def subject(label: str) -> str:
    """The label as the subject of '<subject> is <value>': question labels lose their question words."""
    text = tidy_label(label)
    asked = _QUESTION.match(text)
    if asked:
        return text[asked.end():].strip()
    return text


def _is_question(text: str) -> bool:
    """'how did you hear about us' is a question; 'do not email' is not (a question addresses 'you')."""
    return bool(_QUESTION_START.match(text)) and bool(re.search(r"\byou(?:r)?\b", text))


def _is(label: str, shown: str) -> str:
    """'<label> is <value>', or '<question>: <value>' for a label that is a question nobody can rephrase."""
    text = subject(label)
    if _is_question(text):
        return f"{text}: {shown}"
    return f"{text} is {shown}"


def _count_noun(text: str) -> str | None:
    """The noun of a count label ('number of employees' -> 'employees', 'total visits' -> 'visits'), else None."""
    stripped = _COUNT_PREFIX.sub("", text)
    if stripped != text:
        return stripped.strip() or None
    if " per " in f" {text} " or _is_question(text):
        return None
    words = text.split()
    last = words[-1] if words else ""
    if last.endswith("s") and not last.endswith(("ss", "us", "is", "ics")) and len(last) > 2:
        return re.sub(r"^total\s+", "", text)
    return None


def describe_numeric(label: str, value: float) -> str:
    """A number with its label: '14 minutes on website', '5 visits', 'no visits', 'page views per visit is 2.5'."""
    base, unit = split_unit(label)
    text = tidy_label(base)
    if unit in _DURATIONS:
        spent = _TIME_SPENT.match(text)
        if spent and spent.group(1).strip():
            # "on website" -> "on the website"; a rest that already has an article is left alone.
            rest = re.sub(r"^(on|in|at) (?!the |a |an |our |your )", r"\1 the ", spent.group(1).strip())
            return f"{_amount(value, unit)} {rest}".strip() if value != 0 else f"no time {rest}".strip()
        return _is(base, _amount(value, unit))
    if unit is not None:
        return _is(base, _amount(value, unit))
    first = text.split(" ", 1)[0] if text else ""
    if first in ("seconds", "minutes", "hours", "days", "weeks", "months", "years") and " " in text:
        # "days since last contact" -> "12 days since last contact"
        return f"{format_number(value)} {_plural(first, value)} {text.split(' ', 1)[1]}"
    noun = _count_noun(text)
    if noun is not None and float(value).is_integer() and value >= 0:
        if value == 0:
            return f"no {noun}"
        words = noun.split()
        words[-1] = _plural(words[-1], value)
        return f"{format_number(value)} {' '.join(words)}"
    return _is(base, format_number(value))


def describe_boolean(label: str, value: float) -> str:
    """'do not email is yes' / 'do not email is no'."""
    return _is(label, "yes" if value >= 0.5 else "no")


def describe_category(label: str, level: str, *, rare: bool = False) -> str:
    """'lead source is Reference' (a level merged into "other" reads 'lead source is a rare value')."""
    return _is(label, "a rare value" if rare else str(level))


def date_stem(label: str) -> str:
    """A date label without its date word: 'Created Date' -> 'created', 'Last Activity At' -> 'last activity'."""
    text = tidy_label(label)
    stem = _DATE_WORDS.sub("", text).strip()
    return stem or text


def describe_age(label: str, days: float) -> str:
    """A date given as its age in days: 'created 12 days ago', 'created today', 'renewal in 3 months'."""
    stem = date_stem(label)
    d = float(days)
    if abs(d) < 1:
        return f"{stem} today"
    if 1 <= d < 2:
        return f"{stem} yesterday"
    span = abs(d)
    if span < 60:
        amount, unit = round(span), "days"
    elif span < 730:
        amount, unit = round(span / 30.44), "months"
    else:
        amount, unit = round(span / 365.25), "years"
    shown = f"{amount:,} {_plural(unit, amount)}"
    return f"{stem} {shown} ago" if d > 0 else f"{stem} in {shown}"


def describe_date_part(label: str, part: str, value: float) -> str:
    """One part of a date: 'created on a Monday', 'created in March', 'created around 14:00'."""
    stem = date_stem(label)
    n = int(value)
    if part == "dow" and 0 <= n < 7:
        return f"{stem} on a {_WEEKDAYS[n]}"
    if part == "month" and 1 <= n <= 12:
        return f"{stem} in {_MONTHS[n - 1]}"
    if part == "hour" and 0 <= n < 24:
        return f"{stem} around {n:02d}:00"
    return _is(f"{stem} {part}", format_number(value))


def describe_text(label: str, value: Any) -> str:
    """A free-text field, given as its length (or presence): 'notes filled in' / 'no notes'."""
    text = tidy_label(label)
    if is_missing(value) or not value:
        return f"no {text}"
    return f"{text} filled in"


def describe_missing(label: str) -> str:
    """'lead source unknown' (a question label: 'how did you hear about us: no answer')."""
    text = subject(label)
    return f"{text}: no answer" if _is_question(text) else f"{text} unknown"


def is_missing(value: Any) -> bool:
    """None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Phrasing:
    """How reasons name columns: display labels, and the mapped kind where the matrix hides it.

    A mapped date reaches the model as its age in days and a text field as its length, so the
    matrix alone would show them as plain numbers; `kinds` ("date", "text", ...) says how to read
    them. Built from a feature schema's fields (`from_fields`), or from a plain {column: label}.
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)

    def label(self, column: str) -> str:
        """The column's display label: the mapped label, else the humanised column name."""
        given = self.labels.get(column)
        return given.strip() if isinstance(given, str) and given.strip() else humanise(column)

    def kind(self, column: str) -> str | None:
        """The mapped kind of a column (numeric, categorical, boolean, date, text), if known."""
        return self.kinds.get(column)

    def merged(self, other: Phrasing) -> Phrasing:
        """This phrasing with `other`'s labels and kinds taking precedence."""
        return Phrasing({**self.labels, **other.labels}, {**self.kinds, **other.kinds})

    def to_json(self) -> dict[str, dict[str, str]]:
        """Plain-JSON form (stored in a model's metadata)."""
        return {"labels": dict(self.labels), "kinds": dict(self.kinds)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Phrasing:
        """Inverse of `to_json` (None or {} gives the empty phrasing)."""
        data = data or {}
        return cls({str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
                   {str(k): str(v) for k, v in dict(data.get("kinds") or {}).items()})

    @classmethod
    def from_fields(cls, fields: Iterable[Any]) -> Phrasing:
        """From mapped fields (anything with `feature`, `label` and `kind`, e.g. scoring.schema.MappedField)."""
        labels: dict[str, str] = {}
        kinds: dict[str, str] = {}
        for f in fields:
            if getattr(f, "label", ""):
                labels[f.feature] = f.label
            kinds[f.feature] = f.kind
        return cls(labels, kinds)

    @classmethod
    def of(cls, value: Phrasing | Mapping[str, str] | None) -> Phrasing:
        """A Phrasing from a Phrasing, a plain {column: label} mapping, or None."""
        if isinstance(value, Phrasing):
            return value
        return cls(dict(value or {}), {})
