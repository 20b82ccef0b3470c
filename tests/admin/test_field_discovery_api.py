"""GET /api/fields/discover/<crm>: the CLI's discovery as JSON, against the sandbox CRM through the real SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors.hubspot.client import HubSpotConnector
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from storage.db import Database


def _app(settings_overrides: dict[str, Any], broker: tuple[str, str], **crm: Any) -> Any:
    from bridge import create_app

    app = create_app({**settings_overrides, "broker_url": broker[0], "public_url": "http://localhost", **crm})
    app.testing = True
    return app


@pytest.fixture()
def hubspot_app(settings_overrides: dict[str, Any], broker: tuple[str, str], clean_db: Database,
                sandbox: SandboxCRM) -> Iterator[Any]:
    """The app with HubSpot configured against the sandbox CRM, which holds one custom property."""
    HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).api.crm.properties.core_api.create(
        "contacts", {"name": "seats", "label": "Seats", "type": "number", "fieldType": "number",
                     "groupName": "contactinformation"})
    for i in range(4):
        sandbox.store.hs_create("contacts", {"email": f"c{i}@acme.io", "seats": str(i + 1) if i else None})
    app = _app(settings_overrides, broker, hubspot_access_token=DEFAULT_HUBSPOT_TOKEN,
               hubspot_base_url=sandbox.base_url)
    yield app
    app.extensions["leadbridge"].db.dispose()


def test_discovery_needs_a_token_and_answers_with_the_fields(hubspot_app: Any,
                                                             make_token: Callable[[str], str]) -> None:
    client = hubspot_app.test_client()
    anonymous = client.get("/api/fields/discover/hubspot")
    assert anonymous.status_code == 401 and anonymous.json["error"] == "unauthorized"
    headers = {"Authorization": f"Bearer {make_token('viewer')}"}
    answer = client.get("/api/fields/discover/hubspot?sample=10", headers=headers)
    assert answer.status_code == 200, answer.json
    assert answer.json["objects"] == ["contacts"] and answer.json["sample"] == 10
    seats = next(f for f in answer.json["fields"] if f["name"] == "seats")
    assert seats == {**seats, "custom": True, "type": "number", "sampled": 4, "filled": 3, "fill_rate": 0.75,
                     "suggested_kind": "numeric"}
    assert client.get("/api/fields/discover/hubspot?sample=5000", headers=headers).status_code == 400
    unknown = client.get("/api/fields/discover/hubspot?object=widgets", headers=headers)
    assert unknown.status_code == 404 and "widgets" in unknown.json["message"]
    missing = client.get("/api/fields/discover/salesforce", headers=headers)
    assert missing.status_code == 409 and missing.json["error"] == "not_configured"


def test_an_unreachable_crm_is_a_502(settings_overrides: dict[str, Any], broker: tuple[str, str],
                                     clean_db: Database, make_token: Callable[[str], str]) -> None:
    app = _app(settings_overrides, broker, hubspot_access_token=DEFAULT_HUBSPOT_TOKEN,
               hubspot_base_url="http://127.0.0.1:9")
    try:
        answer = app.test_client().get("/api/fields/discover/hubspot",
                                       headers={"Authorization": f"Bearer {make_token('viewer')}"})
        assert answer.status_code == 502 and answer.json["error"] == "crm_unavailable"
    finally:
        app.extensions["leadbridge"].db.dispose()
