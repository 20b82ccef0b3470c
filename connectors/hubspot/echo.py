"""Recognise our own HubSpot writes echoed back as webhooks, so they never trigger a re-score loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import OWN_PREFIX, is_own_field, names_only_own_fields
from core.records import Event

# A property change names the one property that changed, so the event alone tells whether it is ours:
# no record values need remembering between events.
SEEN_KEY: str | None = None


def is_own_echo(event: Event, previous: Mapping[str, Any] | None = None, prefix: str = OWN_PREFIX) -> bool:
    """True when a property change only names leadbridge_* properties (`previous` is not needed)."""
    return names_only_own_fields(event, prefix)


def is_own_webhook_event(event: Mapping[str, Any], prefix: str = OWN_PREFIX) -> bool:
    """The same test on a raw HubSpot webhook event (before it became a canonical Event)."""
    return (str(event.get("subscriptionType", "")).endswith(".propertyChange")
            and is_own_field(str(event.get("propertyName", "")), prefix))
