"""Values checked at one boundary: where vendor payloads become canonical records.

Everything a webhook parser or a connector turns into an `Event`, `Lead` or `Account` passes through
here once. Past this point no value may make a stage raise: every string is valid Unicode without NUL
and of bounded length, every number is finite and fits the column it may land in (on SQLite and on
PostgreSQL alike), every timestamp lies in a sane range, and nesting and sizes are bounded.

The rules:
- An *entry* whose identity is broken (object id missing, too long, not text; timestamp out of range;
  unknown event type) is refused: `EntryRefused`, reported by the parser as an invalid entry.
- A bad *value* inside a good entry is dropped with a reason (`Dropped`), and the rest of the entry is
  kept: a string with NUL or a lone surrogate, a string longer than `MAX_TEXT`, a number that is not
  finite or beyond 64 bits, an object nested deeper than `MAX_DEPTH`, keys or items beyond `MAX_ITEMS`,
  and a head count (`INTEGER_ATTRIBUTES`) that is no count a company can have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from core.records import EVENT_TYPES, Account, Event, Lead

MAX_TEXT = 10_000  # characters in one string value (HubSpot allows 65,536; nothing we score needs more)
MAX_KEY = 255  # characters in a property name
MAX_DEPTH = 10  # nesting of objects and arrays inside an event's properties
MAX_ITEMS = 1_000  # keys in one object, items in one array
MAX_OBJECT_ID = 64  # the inbox's object_id column
MAX_EMAIL = 320  # RFC 5321's limit, and the email columns'
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1  # PostgreSQL `integer`, e.g. accounts.employees
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # before this: a unit mix-up or junk
MAX_FUTURE_SKEW = timedelta(days=1)  # vendor clocks drift; a day ahead of receipt is a broken event

# Property names (lower-cased) whose value becomes an integer column or a numeric feature, with the range
# that column holds. Vendor and Segment names for a company's head count: connectors/<crm>/fields.py,
# connectors/events.py and scoring/features.py TRAIT_ALIASES read these (a test keeps the lists in step).
INTEGER_ATTRIBUTES: dict[str, tuple[int, int]] = {
    name: (0, INT32_MAX)
    for name in ("employees", "numemployees", "numberofemployees", "number_of_employees", "company_size",
                 "companysize")
}


class Dropped(NamedTuple):
    """A value left out of an otherwise good entry: where it was and why (never the value itself)."""

    field: str
    reason: str


class EntryRefused(ValueError):
    """The entry cannot become a canonical record at all; `reason` names the problem without quoting it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def text_problem(value: str, limit: int = MAX_TEXT) -> str | None:
    """Why `value` cannot be stored as text (NUL, a lone surrogate, too long), or None when it can."""
    if len(value) > limit:
        return f"longer than {limit} characters"
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (lone surrogate)"
    return None


def clean_text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """`value` as storable text, or None when it is not text or cannot be stored (a CRM's odd value)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    text = value if isinstance(value, str) else str(value)
    return None if text_problem(text, limit) else text


def clean_count(value: Any, high: int = INT32_MAX) -> int | None:
    """A non-negative whole count (head count, say) that fits an integer column, or None."""
    number = _number(value)
    if number is None or not 0 <= number <= high:
        return None
    return int(number)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        if not text or len(text) > 40:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def clean_event(event: Event) -> tuple[Event, list[Dropped]]:
    """The event with every value checked: refused (EntryRefused) or returned with what was dropped."""
    if event.event_type not in EVENT_TYPES:
        raise EntryRefused("unknown event type")
    if not isinstance(event.object_id, str) or not event.object_id:
        raise EntryRefused("object id is missing")
    problem = text_problem(event.object_id, MAX_OBJECT_ID)
    if problem:
        raise EntryRefused(f"object id {problem}")
    for name in ("occurred_at", "received_at"):
        moment = getattr(event, name)
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise EntryRefused(f"{name} is not an aware date-time")
    if event.occurred_at < EARLIEST:
        raise EntryRefused("timestamp is before 2000-01-01")
    if event.occurred_at > event.received_at + MAX_FUTURE_SKEW:
        raise EntryRefused("timestamp is more than a day in the future")
    dropped: list[Dropped] = []
    email = event.email
    if email is not None:
        problem = "is not text" if not isinstance(email, str) else text_problem(email, MAX_EMAIL)
        if problem:
            dropped.append(Dropped("email", f"e-mail {problem}"))
            email = None
    properties = clean_properties(event.properties, dropped)
    if email is event.email and properties is event.properties:
        return event, dropped
    return replace(event, email=email, properties=properties), dropped


def clean_lead(lead: Lead) -> Lead:
    """A lead read from a CRM with every value storable: odd text becomes None, bad properties are left out."""
    return replace(
        lead, email=clean_text(lead.email, MAX_EMAIL), first_name=clean_text(lead.first_name, 100),
        last_name=clean_text(lead.last_name, 100), title=clean_text(lead.title, 200),
        country=clean_text(lead.country, 100), account_id=clean_text(lead.account_id, 255),
        crm_ids=_clean_ids(lead.crm_ids), properties=clean_properties(lead.properties, []),
    )


def clean_account(account: Account) -> Account:
    """A company read from a CRM with every value storable (a head count that fits its column, or None)."""
    return replace(
        account, name=clean_text(account.name, 255), domain=clean_text(account.domain, 255),
        industry=clean_text(account.industry, 100), employees=clean_count(account.employees),
        country=clean_text(account.country, 100), crm_ids=_clean_ids(account.crm_ids),
    )


def _clean_ids(ids: Mapping[str, Any]) -> dict[str, str]:
    return {crm: text for crm, value in ids.items() if (text := clean_text(value, MAX_OBJECT_ID))}


def clean_properties(properties: Mapping[str, Any], dropped: list[Dropped]) -> Mapping[str, Any]:
    """`properties` with every bad value left out (appended to `dropped`); the same object when all is well."""
    if not isinstance(properties, Mapping):
        dropped.append(Dropped("properties", "must be an object"))
        return {}
    cleaned = _clean_object(properties, "", 1, dropped)
    return properties if cleaned is None else cleaned


_KEEP = object()  # _clean_value: the value is fine as it is
_DROP = object()  # _clean_value: leave the value out


def _clean_object(obj: Mapping[str, Any], path: str, depth: int, dropped: list[Dropped]) -> dict[str, Any] | None:
    """A cleaned copy of `obj`, or None when nothing in it needed cleaning (the common case: no copy)."""
    out: dict[str, Any] | None = None
    for n, (key, value) in enumerate(obj.items()):
        if n >= MAX_ITEMS:
            dropped.append(Dropped(path or "properties", f"more than {MAX_ITEMS} keys; the rest were dropped"))
            out = out if out is not None else dict(list(obj.items())[:n])
            break
        if not isinstance(key, str) or text_problem(key, MAX_KEY):
            dropped.append(Dropped(path or "properties", "a property name is not valid text"))
            result: Any = _DROP
            field = path or "properties"
        else:
            field = f"{path}.{key}" if path else key
            result = _clean_value(value, field, depth, dropped, INTEGER_ATTRIBUTES.get(key.lower()))
        if result is _KEEP:
            if out is not None:
                out[key] = value
            continue
        if out is None:
            out = dict(list(obj.items())[:n])
        if result is not _DROP:
            out[key] = result
    return out


def _clean_value(value: Any, field: str, depth: int, dropped: list[Dropped],
                 integer_range: tuple[int, int] | None = None) -> Any:
    if integer_range is not None and value is not None:
        return _clean_integer_attribute(value, field, integer_range, dropped)
    if value is None or isinstance(value, bool):
        return _KEEP
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            dropped.append(Dropped(field, f"text {problem}"))
            return _DROP
        return _KEEP
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return _KEEP
        dropped.append(Dropped(field, "integer beyond 64 bits"))
        return _DROP
    if isinstance(value, float):
        if math.isfinite(value):
            return _KEEP
        dropped.append(Dropped(field, "number is not finite"))
        return _DROP
    if isinstance(value, (Mapping, list, tuple)):
        if depth >= MAX_DEPTH:
            dropped.append(Dropped(field, f"nested deeper than {MAX_DEPTH} levels"))
            return _DROP
        if isinstance(value, Mapping):
            cleaned = _clean_object(value, field, depth + 1, dropped)
            return _KEEP if cleaned is None else cleaned
        return _clean_array(value, field, depth + 1, dropped)
    dropped.append(Dropped(field, f"unsupported value type {type(value).__name__}"))
    return _DROP


def _clean_array(items: list[Any] | tuple[Any, ...], field: str, depth: int, dropped: list[Dropped]) -> Any:
    out: list[Any] | None = None
    if len(items) > MAX_ITEMS:
        dropped.append(Dropped(field, f"more than {MAX_ITEMS} items; the rest were dropped"))
        out = []
    for n, item in enumerate(items[:MAX_ITEMS]):
        result = _clean_value(item, f"{field}[{n}]", depth, dropped)
        if result is _KEEP:
            if out is not None:
                out.append(item)
            continue
        if out is None:
            out = list(items[:n])
        if result is not _DROP:
            out.append(result)
    return _KEEP if out is None else out


def _clean_integer_attribute(value: Any, field: str, bounds: tuple[int, int], dropped: list[Dropped]) -> Any:
    # A head count may come as a number or as text ("250", "51-200", "1,000+"); only a value that reads as one
    # number is range-checked. Text like "51-200" is kept: the features bucket it.
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            dropped.append(Dropped(field, f"text {problem}"))
            return _DROP
        try:
            number: float | int = float(value.strip().replace(",", ""))
        except ValueError:
            return _KEEP
        if not math.isfinite(number):  # "nan", "inf", "1e999": numbers, but none a column can hold
            dropped.append(Dropped(field, "number is not finite"))
            return _DROP
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        dropped.append(Dropped(field, "must be a number"))
        return _DROP
    else:
        number = value
        if isinstance(number, float) and not math.isfinite(number):
            dropped.append(Dropped(field, "number is not finite"))
            return _DROP
    low, high = bounds
    if not low <= number <= high:
        dropped.append(Dropped(field, f"number out of range ({low} to {high})"))
        return _DROP
    return _KEEP
