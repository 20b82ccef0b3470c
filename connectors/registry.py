"""The CRMs leadbridge knows, and the one place a CRM connector is built (with its rate limit and retries).

Adding a CRM is a folder connectors/<crm>/ whose client.py holds a connector class (the CrmConnector
methods, `from_settings` and `rate_limit`) and one line in PROVIDERS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import redis

from connectors.base import CrmConnector
from connectors.ratelimit import RedisTokenBucket
from connectors.retry import DEFAULT_RETRY, WORKER_RETRY, RetryPolicy
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class Provider:
    """A CRM: where its connector class lives, and how hard a worker's calls retry before Celery does."""

    name: str
    path: str  # "package.module:Class"
    worker_retry: RetryPolicy


PROVIDERS: dict[str, Provider] = {provider.name: provider for provider in (
    Provider("hubspot", "connectors.hubspot.client:HubSpotConnector", WORKER_RETRY),
    # A worker's Salesforce calls keep the connector's own retries: there is no shared rate bucket to wait on.
    Provider("salesforce", "connectors.salesforce.client:SalesforceConnector", DEFAULT_RETRY),
)}


def connector_class(crm: str) -> Any:
    """The connector class of `crm` (imported on first use: a process loads only the SDKs it uses)."""
    try:
        module, name = PROVIDERS[crm].path.split(":")
    except KeyError:
        raise ValueError(f"unknown CRM {crm!r}; known: {', '.join(PROVIDERS)}") from None
    return getattr(importlib.import_module(module), name)


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
