"""Errors raised by the webhook parsers for problems with a whole request body.

Every parser raises only `MalformedPayload` (or one of its subclasses) on bad input, whatever the bytes.
Problems with a single event inside an otherwise good batch are not raised: they are reported in
`ParseResult.invalid` so the rest of the batch is kept.
"""

from __future__ import annotations


class MalformedPayload(ValueError):
    """The request body as a whole cannot be accepted (not JSON/XML, wrong shape, too many events...).

    `code` is a short machine-readable slug for the JSON error body; `str(exc)` is a sentence for people
    that names the problem and never echoes payload data.
    """

    code: str = "malformed_payload"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class TooManyEvents(MalformedPayload):
    """The batch holds more events than the vendor ever sends in one request."""

    code = "too_many_events"

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"batch holds {count} events; at most {limit} are accepted per request")
        self.count = count
        self.limit = limit


class OrganizationMismatch(MalformedPayload):
    """A Salesforce message names a different org than the one configured for this source."""

    code = "organization_mismatch"

    def __init__(self) -> None:
        # The ids themselves stay out of the message: the text may end up in Salesforce's delivery page.
        super().__init__("OrganizationId does not match the org configured for this source")
