"""The CRMs leadbridge knows: the one list of providers, the one place a connector is built, and the generic
calls that go through each provider's own modules.

Each provider is a folder connectors/<name>/ with the same module names (client, webhook, fields,
outcomes, history, echo); code outside connectors/ asks here instead of branching on the CRM's name. Adding a
CRM is that folder and one line in PROVIDERS (docs/adding-a-crm.md). A client module (it loads the vendor SDK)
is imported only when a connector is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import redis

import connectors.events
from connectors.base import CrmConnector, canonical_fields, names_only_own_fields
from connectors.hubspot import actions as hubspot_actions
from connectors.hubspot import echo as hubspot_echo
from connectors.hubspot import fields as hubspot_fields
from connectors.hubspot import history as hubspot_history
from connectors.hubspot import outcomes as hubspot_outcomes
from connectors.ratelimit import RedisTokenBucket
from connectors.retry import DEFAULT_RETRY, WORKER_RETRY, RetryPolicy
from connectors.salesforce import actions as salesforce_actions
from connectors.salesforce import echo as salesforce_echo
from connectors.salesforce import fields as salesforce_fields
from connectors.salesforce import history as salesforce_history
from connectors.salesforce import outcomes as salesforce_outcomes
from core.records import Event, Outcome
from core.settings import Settings


@dataclass(frozen=True)
class Provider:
    """One CRM: its modules under connectors/<name>/, its connector class, how hard a worker's calls retry."""

    name: str
    label: str  # how people write it
    connector: str  # the connector class in connectors/<name>/client.py
    worker_retry: RetryPolicy  # before Celery's own retry takes over
    fields: ModuleType
    outcomes: ModuleType
    history: ModuleType
    echo: ModuleType
    actions: ModuleType


PROVIDERS: dict[str, Provider] = {provider.name: provider for provider in (
    Provider("hubspot", "HubSpot", "HubSpotConnector", WORKER_RETRY,
             hubspot_fields, hubspot_outcomes, hubspot_history, hubspot_echo, hubspot_actions),
    # A worker's Salesforce calls keep the connector's own retries: there is no shared rate bucket to wait on.
    Provider("salesforce", "Salesforce", "SalesforceConnector", DEFAULT_RETRY,
             salesforce_fields, salesforce_outcomes, salesforce_history, salesforce_echo, salesforce_actions),
)}
# Event sources that name people but are no CRM: their field tables (behavioural events carry no accounts).
LEAD_FIELD_TABLES: dict[str, Mapping[str, tuple[str, ...]]] = {
    **{name: p.fields.LEAD_FIELDS for name, p in PROVIDERS.items()}, "web": connectors.events.LEAD_FIELDS}


def provider(crm: str) -> Provider:
    """The provider named `crm`; ValueError for a name that is none."""
    try:
        return PROVIDERS[crm]
    except KeyError:
        raise ValueError(f"crm must be one of {', '.join(PROVIDERS)}, not {crm!r}") from None


def vendor_label(name: str) -> str:
    """How people write a CRM's (or Slack's) name: `HubSpot` for `hubspot`; an unknown name as it is."""
    found = PROVIDERS.get(name)
    return found.label if found else {"slack": "Slack"}.get(name, name)


def client_module(crm: str) -> ModuleType:
    """connectors/<crm>/client.py, imported when first asked for (it loads the vendor SDK)."""
    return importlib.import_module(f"connectors.{provider(crm).name}.client")


def connector_class(crm: str) -> Any:
    """The connector class of `crm` (a process loads only the SDKs it uses)."""
    return getattr(client_module(crm), provider(crm).connector)


def build_connector(crm: str, settings: Settings, *, redis_client: redis.Redis | None = None,
                    retry: RetryPolicy | None = None, session: Any = None) -> CrmConnector | None:
    """The connector for `crm` from `settings`, or None when they do not configure that CRM.

    With `redis_client`, its calls take tokens from the CRM account's rate-limit bucket, shared by every
    process that calls that account. `retry` defaults to the provider's worker policy; `session` is an HTTP
    session for CRMs whose SDK takes one (the sandbox CRM's routing).
    """
    connector = connector_class(crm).from_settings(settings, retry=retry or PROVIDERS[crm].worker_retry,
                                                   session=session)
    if connector is not None and redis_client is not None:
        budget = connector.rate_limit(settings)
        if budget is not None:
            key, limit, window = budget
            connector.limiter = RedisTokenBucket(redis_client, key, limit=limit, window_seconds=window)
    return connector


def lead_fields(crm: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical lead attributes (email, names, title, company, ...) found in a vendor payload."""
    return canonical_fields(properties, LEAD_FIELD_TABLES.get(crm, {}))


def account_fields(crm: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical account attributes found in a vendor company/Account payload."""
    found = PROVIDERS.get(crm)
    return canonical_fields(properties, found.fields.ACCOUNT_FIELDS) if found else {}


def feature_objects(crm: str) -> tuple[str, ...]:
    """The objects of `crm` whose properties can be mapped to model features (ValueError for an unknown CRM)."""
    return tuple(provider(crm).fields.FEATURE_OBJECTS)


def own_properties(crm: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Properties leadbridge itself writes on `crm`'s people, lower-cased -> why: the score fields (built-in
    names and the admin's `overrides`, output -> field name) and what its actions set (owner, lead status)."""
    fields = provider(crm).fields
    out = {name.lower(): f"leadbridge writes its {output} there" for output, name in fields.SCORE_FIELD_NAMES.items()}
    out.update({name.lower(): f"leadbridge writes its {output} there" for output, name in (overrides or {}).items() if name})
    out.update({name.lower(): "leadbridge's actions set it (owner routing / lead status)"
                for name in fields.ACTION_PROPERTIES})
    return out


def property_name_problem(crm: str, name: str) -> str | None:
    """Why `name` cannot be one of `crm`'s property names (None when it can)."""
    fields = provider(crm).fields
    return None if fields.FIELD_NAME.match(name) else f"{name!r} {fields.FIELD_NAME_RULE}"


def seen_key(crm: str) -> str | None:
    """Where a lead keeps its record's last seen values for echo checks (None: the event alone tells)."""
    found = PROVIDERS.get(crm)
    return found.echo.SEEN_KEY if found else None


def is_own_echo(event: Event, previous: Mapping[str, Any] | None = None) -> bool:
    """Say whether a webhook event is only our own write coming back (see connectors/<crm>/echo.py)."""
    found = PROVIDERS.get(event.crm)
    return bool(found.echo.is_own_echo(event, previous)) if found else names_only_own_fields(event)


def linked_people(event: Event) -> list[tuple[str, str, str]]:
    """(crm, object type, id) of other records the event says are the same person (a converted Lead's Contact)."""
    found = PROVIDERS.get(event.crm)
    if found is None:
        return []
    return [(event.crm, object_type, object_id)
            for object_type, object_id in found.fields.linked_people(event.object_type, event.properties)]


def outcomes_of_events(events: Sequence[Event], associations: Callable[[str, str, Sequence[str]], list[Event]],
                       rules: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> tuple[dict[str, list[Outcome]], list[str]]:
    """The won/lost outcomes events report, by CRM (lead_id: the CRM's person id), and unresolved deal ids.

    `associations(crm, object_type, ids)` loads stored association events, for rules that need them; `rules` is the
    outcome definition in force per CRM (core/outcome_rules.py; default: the default rules).
    """
    out: dict[str, list[Outcome]] = {}
    unresolved: list[str] = []
    for name, found in PROVIDERS.items():
        mine = [e for e in events if e.crm == name]
        if not mine:
            continue
        people, missing = found.outcomes.outcomes_of_events(
            mine, lambda object_type, ids, crm=name: associations(crm, object_type, ids), (rules or {}).get(name))
        out[name] = people
        unresolved.extend(missing)
    return out, unresolved


def outcomes_kept(crm: str, outcomes: Sequence[Outcome], rule: Mapping[str, Any] | None) -> list[Outcome]:
    """The outcomes a CRM read found (by the default rules) that count under `rule` (None: all of them)."""
    found = PROVIDERS.get(crm)
    if found is None or rule is None:
        return list(outcomes)
    return [o for o in outcomes if found.outcomes.keeps(o, rule)]
