"""What a parser returns: the canonical events, plus the entries it rejected or skipped, by index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from core.records import Event


class InvalidEvent(NamedTuple):
    """An entry of the batch that is broken (missing id, bad timestamp, wrong portal...)."""

    index: int
    reason: str


class DroppedValue(NamedTuple):
    """A value left out of an accepted entry (the entry itself was kept): where it was and why."""

    index: int
    field: str
    reason: str


class IgnoredEvent(NamedTuple):
    """A well-formed entry we deliberately do not use (object type or event name we do not score)."""

    index: int
    reason: str


@dataclass(slots=True)
class ParseResult:
    """Canonical events from one request body, with per-entry rejections reported by batch index.

    `index` is the entry's position in the vendor batch (the JSON array, the `batch` list, or the n-th
    `Notification` element), counting from 0. `dropped` lists values left out of accepted entries
    (core.values: NUL, lone surrogates, non-finite or out-of-range numbers, over-long text, deep nesting).
    """

    events: list[Event] = field(default_factory=list)
    invalid: list[InvalidEvent] = field(default_factory=list)
    ignored: list[IgnoredEvent] = field(default_factory=list)
    dropped: list[DroppedValue] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready summary for the webhook response body (no payload data in it)."""
        return {
            "accepted": len(self.events),
            "invalid": [{"index": i, "reason": r} for i, r in self.invalid],
            "ignored": [{"index": i, "reason": r} for i, r in self.ignored],
            "dropped": [{"index": i, "field": f, "reason": r} for i, f, r in self.dropped],
        }
