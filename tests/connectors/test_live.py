"""Live checks against real accounts; skipped unless credentials are given.

tests/conftest.py removes HUBSPOT_ACCESS_TOKEN / SALESFORCE_* from the environment so the suite never touches a
developer's accounts by accident; set LEADBRIDGE_LIVE_HUBSPOT_ACCESS_TOKEN, LEADBRIDGE_LIVE_SALESFORCE_USERNAME,
LEADBRIDGE_LIVE_SALESFORCE_PASSWORD, LEADBRIDGE_LIVE_SALESFORCE_SECURITY_TOKEN (and optionally
LEADBRIDGE_LIVE_SALESFORCE_DOMAIN) to run them. They only read, and check fields without creating any.
"""

from __future__ import annotations

import os

import pytest

from connectors.hubspot.client import HubSpotConnector
from connectors.salesforce.client import SalesforceConnector

pytestmark = pytest.mark.live


def _env(name: str) -> str | None:
    return os.environ.get(f"LEADBRIDGE_LIVE_{name}") or None


@pytest.mark.skipif(not _env("HUBSPOT_ACCESS_TOKEN"), reason="LEADBRIDGE_LIVE_HUBSPOT_ACCESS_TOKEN not set")
def test_live_hubspot_read_and_check() -> None:
    connector = HubSpotConnector(_env("HUBSPOT_ACCESS_TOKEN") or "")
    report = connector.provision_fields(create=False)
    assert report.existing or report.missing
    stages = connector.deal_stage_outcomes()
    assert any(stages.values())  # at least one closed-won stage in the account's pipelines


@pytest.mark.skipif(not (_env("SALESFORCE_USERNAME") and _env("SALESFORCE_PASSWORD")),
                    reason="LEADBRIDGE_LIVE_SALESFORCE_USERNAME / _PASSWORD not set")
def test_live_salesforce_read_and_check() -> None:
    connector = SalesforceConnector(username=_env("SALESFORCE_USERNAME"), password=_env("SALESFORCE_PASSWORD"),
                                    security_token=_env("SALESFORCE_SECURITY_TOKEN"),
                                    domain=_env("SALESFORCE_DOMAIN") or "login")
    report = connector.check_fields()
    assert len(report.existing) + len(report.missing) == 18
    budget = connector.api_budget()
    assert budget["limit"] > 0 and 0 <= budget["remaining"] <= budget["limit"]
    leads = connector.query_all("SELECT Id FROM Lead ORDER BY CreatedDate DESC LIMIT 5")
    assert len(connector.read_leads([r["Id"] for r in leads])) == len(leads)
