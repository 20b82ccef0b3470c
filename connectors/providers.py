"""The CRM providers by name, and the generic calls that go through each one's own modules.

Each provider is a folder with the same module names (client, webhook, fields, outcomes, history, echo);
code outside connectors/ asks here instead of branching on the CRM's name. A client module (it loads the
vendor SDK) is imported only when asked for; building a connector is the registry's job.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import connectors.events
from connectors.base import canonical_fields, names_only_own_fields
from connectors.hubspot import echo as hubspot_echo
from connectors.hubspot import fields as hubspot_fields
from connectors.hubspot import history as hubspot_history
from connectors.hubspot import outcomes as hubspot_outcomes
from connectors.salesforce import echo as salesforce_echo
from connectors.salesforce import fields as salesforce_fields
from connectors.salesforce import history as salesforce_history
from connectors.salesforce import outcomes as salesforce_outcomes
from core.records import Event, Outcome


@dataclass(frozen=True)
class Provider:
    """One CRM's modules under connectors/<name>/."""

    name: str
    label: str  # how people write it
    fields: ModuleType
    outcomes: ModuleType
    history: ModuleType
    echo: ModuleType


PROVIDERS: dict[str, Provider] = {
    "hubspot": Provider("hubspot", "HubSpot", hubspot_fields, hubspot_outcomes, hubspot_history, hubspot_echo),
    "salesforce": Provider("salesforce", "Salesforce", salesforce_fields, salesforce_outcomes, salesforce_history,
                           salesforce_echo),
}
# Event sources that name people but are no CRM: their field tables (behavioural events carry no accounts).
LEAD_FIELD_TABLES: dict[str, Mapping[str, tuple[str, ...]]] = {
    **{name: p.fields.LEAD_FIELDS for name, p in PROVIDERS.items()}, "web": connectors.events.LEAD_FIELDS}


def provider(crm: str) -> Provider:
    """The provider named `crm`; ValueError for a name that is none."""
    try:
        return PROVIDERS[crm]
    except KeyError:
        raise ValueError(f"crm must be one of {', '.join(PROVIDERS)}, not {crm!r}") from None


def client_module(crm: str) -> ModuleType:
    """connectors/<crm>/client.py, imported when first asked for (it loads the vendor SDK)."""
    return importlib.import_module(f"connectors.{provider(crm).name}.client")


def lead_fields(crm: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical lead attributes (email, names, title, company, ...) found in a vendor payload."""
    return canonical_fields(properties, LEAD_FIELD_TABLES.get(crm, {}))


def account_fields(crm: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical account attributes found in a vendor company/Account payload."""
    found = PROVIDERS.get(crm)
    return canonical_fields(properties, found.fields.ACCOUNT_FIELDS) if found else {}


def seen_key(crm: str) -> str | None:
    """Where a lead keeps its record's last seen values for echo checks (None: the event alone tells)."""
    found = PROVIDERS.get(crm)
    return found.echo.SEEN_KEY if found else None


def is_own_echo(event: Event, previous: Mapping[str, Any] | None = None) -> bool:
    """Say whether a webhook event is only our own write coming back (see connectors/<crm>/echo.py)."""
    found = PROVIDERS.get(event.crm)
    return bool(found.echo.is_own_echo(event, previous)) if found else names_only_own_fields(event)


def outcomes_of_events(events: Sequence[Event], associations: Callable[[str, str, Sequence[str]], list[Event]]
                       ) -> tuple[dict[str, list[Outcome]], list[str]]:
    """The won/lost outcomes events report, by CRM (lead_id: the CRM's person id), and unresolved deal ids.

    `associations(crm, object_type, ids)` loads stored association events, for rules that need them.
    """
    out: dict[str, list[Outcome]] = {}
    unresolved: list[str] = []
    for name, found in PROVIDERS.items():
        mine = [e for e in events if e.crm == name]
        if not mine:
            continue
        people, missing = found.outcomes.outcomes_of_events(
            mine, lambda object_type, ids, crm=name: associations(crm, object_type, ids))
        out[name] = people
        unresolved.extend(missing)
    return out, unresolved
