"""What every inbound webhook parser shares: vendor bytes in, canonical `core.records.Event`s out.

The parsers themselves live with their source (`connectors.hubspot.webhook`,
`connectors.salesforce.webhook`, `connectors.events`). No Flask, no database: the webhook views verify
the signature, call one of them, store the events under their dedupe keys and answer. Each parser raises
only `MalformedPayload` (or a subclass) for a body it cannot accept, and reports single broken or skipped
entries in the returned `ParseResult`.
"""

from connectors.parsing.errors import MalformedPayload, OrganizationMismatch, TooManyEvents
from connectors.parsing.results import IgnoredEvent, InvalidEvent, ParseResult

__all__ = [
    "IgnoredEvent",
    "InvalidEvent",
    "MalformedPayload",
    "OrganizationMismatch",
    "ParseResult",
    "TooManyEvents",
]
