"""Helpers shared by the vendor parsers: safe JSON, timestamps, e-mail, dedupe keys, batch building."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.parsing.errors import MalformedPayload, TooManyEvents
from connectors.parsing.results import DroppedValue, IgnoredEvent, InvalidEvent, ParseResult
from core import fastjson
from core.records import Event
from core.values import EntryRefused, clean_event

log = logging.getLogger(__name__)

# Anything before this is a unit mix-up (seconds sent where milliseconds are expected) or junk.
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
# Vendor clocks and browser clocks drift; a day ahead of our clock is already a broken event, and
# accepting it would keep a lead "recently active" until that date.
MAX_FUTURE_SKEW = timedelta(days=1)
# The key under which parsers put delivery metadata (vendor event ids, change source) inside
# Event.properties. CRM field names never start with "_", so it cannot collide with a real property.
META_KEY = "_meta"


class EventInvalid(Exception):
    """Raised inside a parser for one batch entry that is broken; becomes an InvalidEvent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventIgnored(Exception):
    """Raised inside a parser for one batch entry we deliberately skip; becomes an IgnoredEvent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def reject_json_constant(name: str) -> Any:
    """json.loads hook: refuse NaN and Infinity."""
    # NaN and Infinity are not JSON (RFC 8259), and they poison feature maths and JSONB columns downstream.
    raise ValueError(f"{name} is not valid JSON")


def load_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body, raising MalformedPayload with the reason when it is not JSON."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise MalformedPayload("body must be bytes", code="not_json")
    raw = bytes(body)
    if not raw.strip():
        raise MalformedPayload("body is empty; expected JSON", code="empty_body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("body is not valid UTF-8", code="not_json") from None
    try:
        return json.loads(text, parse_constant=reject_json_constant)
    except RecursionError:
        raise MalformedPayload("body is not JSON: nested too deeply", code="not_json") from None
    except ValueError as exc:
        # JSONDecodeError's msg/pos name the problem without echoing the payload.
        detail = f"{exc.msg} at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise MalformedPayload(f"body is not valid JSON: {detail}", code="not_json") from None


def check_batch_size(count: int, limit: int) -> None:
    """Raise TooManyEvents when a batch is larger than the vendor's documented maximum."""
    if count > limit:
        raise TooManyEvents(count, limit)


def stable_hash(*parts: Any) -> str:
    """Return a hex SHA-256 over JSON-encoded parts: the same values always give the same key."""
    # surrogatepass: a lone surrogate in a hashed value must not fail the entry; core.values drops the value.
    return hashlib.sha256(fastjson.dumps(list(parts), sort_keys=True).encode("utf-8", "surrogatepass")).hexdigest()


def time_ordered_key(occurred_at: datetime, digest: str) -> str:
    """A 64-hex-digit dedupe key: the event time in milliseconds (12 digits), then 52 digits of `digest`.

    Only for keys whose digest covers the event time (a redelivery carries the same time). A purely
    random key lands every insert on a different page of the unique index: a 100-event batch then
    rewrote ~100 index pages (~400 KB of WAL per commit). Time-led keys of live traffic land together.
    """
    return f"{int(occurred_at.timestamp() * 1000) & 0xFFFFFFFFFFFF:012x}{digest[:52]}"


def as_utc(value: datetime) -> datetime:
    """Return an aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def is_int(value: Any) -> bool:
    """True for real integers (bool is an int in Python, but never a valid id or timestamp)."""
    return isinstance(value, int) and not isinstance(value, bool)


def ms_to_datetime(value: Any, field: str) -> datetime:
    """Convert epoch milliseconds (int, or an integral float/string) to aware UTC, or raise EventInvalid."""
    if isinstance(value, bool) or value is None:
        raise EventInvalid(f"{field} must be epoch milliseconds")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise EventInvalid(f"{field} must be whole epoch milliseconds")
        value = int(value)
    elif isinstance(value, str):
        stripped = value.strip()
        if not (stripped.isascii() and stripped.isdigit()) or len(stripped) > 16:
            raise EventInvalid(f"{field} must be epoch milliseconds")
        value = int(stripped)
    elif not is_int(value):
        raise EventInvalid(f"{field} must be epoch milliseconds")
    if value < 0 or value > 253402300799999:  # 9999-12-31T23:59:59.999Z, the largest datetime
        raise EventInvalid(f"{field} is out of range")
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
    if moment < EARLIEST_OCCURRED_AT and value >= 946684800:
        # 1717430400 read as ms is January 1970: the sender almost certainly used seconds.
        raise EventInvalid(f"{field} looks like epoch seconds; expected milliseconds")
    return moment


def iso_to_datetime(value: Any, field: str) -> datetime:
    """Parse an ISO-8601 string to aware UTC (naive means UTC), or raise EventInvalid."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise EventInvalid(f"{field} must be an ISO-8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise EventInvalid(f"{field} is not an ISO-8601 date-time") from None
    try:
        return as_utc(parsed)
    except (OverflowError, ValueError):
        # e.g. 0001-01-01T00:00:00+01:00 cannot be shifted to UTC
        raise EventInvalid(f"{field} is out of range") from None


def check_occurred_at(moment: datetime, received_at: datetime, field: str) -> datetime:
    """Reject timestamps from before 2000 or more than a day after we received them."""
    if moment < EARLIEST_OCCURRED_AT:
        raise EventInvalid(f"{field} is before 2000-01-01")
    if moment > received_at + MAX_FUTURE_SKEW:
        raise EventInvalid(f"{field} is more than a day in the future")
    return moment


def normalize_email(value: Any) -> str | None:
    """Return a trimmed, lower-cased address when `value` looks like one, else None."""
    if not isinstance(value, str):
        return None
    candidate = value.strip().lower()
    if len(candidate) > 320 or candidate.count("@") != 1:
        return None
    local, _, domain = candidate.partition("@")
    if not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        return None
    if any(ch.isspace() for ch in candidate):
        return None
    return candidate


def json_type(value: Any) -> str:
    """Name a decoded JSON value's type for an error message ("an object", "an array"...)."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def clip(text: str, limit: int = 80) -> str:
    """Shorten a vendor-supplied name for use in an error reason."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class BatchBuilder:
    """Collect events and per-entry rejections; drop in-batch duplicates; contain unexpected errors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.result = ParseResult()
        self._seen: dict[str, int] = {}

    def add(self, index: int, event: Event) -> None:
        """Keep `event` unless an earlier entry of this batch had the same dedupe key."""
        first = self._seen.get(event.dedupe_key)
        if first is not None:
            self.result.ignored.append(IgnoredEvent(index, f"duplicate of entry {first} in this batch"))
            return
        self._seen[event.dedupe_key] = index
        self.result.events.append(event)

    def run(self, index: int, parse_one: Callable[[], list[Event]]) -> None:
        """Parse one entry, turning EventInvalid/EventIgnored (and any bug) into a reported rejection.

        Every event passes core.values.clean_event here, the one boundary where values are checked: an entry
        it refuses is invalid, a value it drops is listed in `dropped` and the rest of the entry is kept.
        """
        dropped: list[DroppedValue] = []
        try:
            events = []
            for parsed in parse_one():
                event, left_out = clean_event(parsed)
                dropped.extend(DroppedValue(index, d.field, d.reason) for d in left_out)
                events.append(event)
        except (EventInvalid, EntryRefused) as exc:
            self.result.invalid.append(InvalidEvent(index, exc.reason))
            return
        except EventIgnored as exc:
            self.result.ignored.append(IgnoredEvent(index, exc.reason))
            return
        except Exception as exc:  # noqa: BLE001 - one odd entry must not fail the batch or surface as a 500
            # No exception text or traceback: they may quote payload values (PII). The type and the
            # line that raised are enough to reproduce it from the stored raw body.
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
            log.error(
                "webhook.parse.unexpected_error",
                extra={"source": self.source, "index": index, "error_type": type(exc).__name__, "at": where},
            )
            self.result.invalid.append(InvalidEvent(index, f"could not be parsed ({type(exc).__name__})"))
            return
        self.result.dropped.extend(dropped)
        for event in events:
            self.add(index, event)
