"""Recognise our own Salesforce writes echoed back as Outbound Messages, so they never trigger a re-score loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import (
    AUDIT_FIELDS,
    META_KEY,
    OWN_PREFIX,
    changed_fields_are_ours,
    names_only_own_fields,
    same_field_value,
)
from core.records import Event

# Outbound Messages carry the whole record, not what changed: the record's last seen field values are kept
# under this key in the lead's properties, and an event is compared with them.
SEEN_KEY: str | None = "_sf_seen"


def is_own_echo(event: Event, previous: Mapping[str, Any] | None = None, prefix: str = OWN_PREFIX) -> bool:
    """Say whether an event is only our own write coming back.

    With `previous` (the values last seen for that record) the event is ours when every field that differs
    from it is one of ours. Without it, the event counts as ours only when it carries nothing but our fields
    (a Flow callout sending the changed fields). Creations, deletions and merges are never echoes.
    """
    if event.event_type != "property_change":
        return False
    if previous is None:
        return names_only_own_fields(event, prefix)
    props = {k: v for k, v in event.properties.items() if k != META_KEY}
    prev = {k.lower(): v for k, v in previous.items()}
    changed = [k for k, v in props.items()
               if k.lower() not in AUDIT_FIELDS and not same_field_value(v, prev.get(k.lower()))]
    return changed_fields_are_ours(changed, prefix)
