"""Human formatting for the admin templates (Jinja filters): timestamps, epoch milliseconds, stored values, audit diffs.

Pages show what a person reads, never the wire format: a CRM's epoch-millisecond datetime becomes a UTC time,
a JSON value becomes "key: value" text, and an audit entry becomes "field: old → new" lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask

EMPTY = "–"
TEXT_LIMIT = 300  # characters of one value on a page; the rest is cut with an ellipsis
# Epoch milliseconds shown as times only between these instants (2000-01-01 and 2100-01-01 UTC): a number outside
# is not a timestamp the product wrote.
_MS_LOW, _MS_HIGH = 946_684_800_000, 4_102_444_800_000


def timestamp(value: Any) -> str:
    """A datetime (or ISO 8601 text) as "YYYY-MM-DD HH:MM:SS UTC"; other values unchanged, None as a dash."""
    if value is None or value == "":
        return EMPTY
    moment = value if isinstance(value, datetime) else _parse_iso(value)
    if moment is None:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def epoch_ms(value: Any) -> str:
    """Epoch milliseconds (a number or its digits, as HubSpot datetime properties hold them) as a UTC time."""
    if isinstance(value, bool):
        return str(value)
    try:
        ms = int(str(value).strip())
    except (TypeError, ValueError):
        return timestamp(value)
    if not _MS_LOW <= ms < _MS_HIGH:
        return str(value)
    return timestamp(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 19 or value[4:5] != "-" or value[10:11] not in ("T", " "):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _cut(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plain(value: Any, limit: int = TEXT_LIMIT) -> str:
    """A stored (JSON) value as text a person reads: no braces, quotes or escapes; times in UTC."""
    return _cut(_plain(value), limit)


def _plain(value: Any) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return timestamp(value) if _parse_iso(value) is not None else value
    if isinstance(value, Mapping):
        if not value:
            return "none"
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        sep = " | " if any(isinstance(v, (Mapping, list, tuple)) for v in value) else ", "
        return sep.join(_plain(v) for v in value)
    return str(value)


def shown_value(value: Any, output: str | None = None) -> str:
    """A value sent to a CRM field, as the admin reads it: the scored_at output as a UTC time, empty as "(empty)"."""
    if value is None or value == "":
        return "(empty)"
    if output == "scored_at":
        return epoch_ms(value)
    return str(value)


@dataclass(frozen=True)
class Change:
    """One field of an audit entry: what it was and what it became (None: absent on that side)."""

    field: str
    before: str | None
    after: str | None


def audit_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[Change]:
    """An audit entry's before/after as per-field changes: the fields that differ (all of them on a create or a
    delete, when only one side was recorded)."""
    old = before if isinstance(before, Mapping) else {}
    new = after if isinstance(after, Mapping) else {}
    keys = list(new) + [k for k in old if k not in new]
    both = bool(old) and bool(new)
    changed = [k for k in keys if not both or k not in old or k not in new or old[k] != new[k]]
    return [Change(str(k), plain(old[k]) if k in old else None, plain(new[k]) if k in new else None)
            for k in (changed or keys)]


FILTERS = {"timestamp": timestamp, "epoch_ms": epoch_ms, "plain": plain, "shown_value": shown_value,
           "audit_changes": audit_changes}


def init_app(app: Flask) -> None:
    """Make the filters available to every template."""
    app.jinja_env.filters.update(FILTERS)
