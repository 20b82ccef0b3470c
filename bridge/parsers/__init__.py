"""Pure parsers for inbound webhook bodies: vendor bytes in, canonical `core.records.Event`s out.

No Flask, no database: the webhook views verify the signature, call one of these, store the events
under their dedupe keys and answer. Each parser raises only `MalformedPayload` (or a subclass) for a
body it cannot accept, and reports single broken or skipped entries in the returned `ParseResult`.
"""

from bridge.parsers.errors import MalformedPayload, OrganizationMismatch, TooManyEvents
from bridge.parsers.events import classify_page, parse_events
from bridge.parsers.hubspot import parse_hubspot
from bridge.parsers.results import IgnoredEvent, InvalidEvent, ParseResult
from bridge.parsers.salesforce import (
    ack_response,
    fault_response,
    parse_salesforce_json,
    parse_salesforce_outbound,
)

__all__ = [
    "IgnoredEvent",
    "InvalidEvent",
    "MalformedPayload",
    "OrganizationMismatch",
    "ParseResult",
    "TooManyEvents",
    "ack_response",
    "classify_page",
    "fault_response",
    "parse_events",
    "parse_hubspot",
    "parse_salesforce_json",
    "parse_salesforce_outbound",
]
