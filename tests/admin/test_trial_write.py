"""The field-mapping test write never changes what a live CRM record shows.

It writes the values leadbridge holds for the record (as the writeback shows them, tier included) or refuses
and writes nothing. Against the sandbox CRM over HTTP through the real HubSpot SDK, via the JSON API and
the admin page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.base import shown_values, tier_of
from connectors.hubspot.client import HubSpotConnector
from core.records import utcnow
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from storage.db import Database
from storage.models import Account, AuditEntry, Lead
from tasks.bands import cutoffs_in_force
from tests.admin.conftest import csrf_of, log_in
from tests.crm_ids import with_ids

LEADBRIDGE = ("leadbridge_score", "leadbridge_grade", "leadbridge_reasons", "leadbridge_tier",
              "leadbridge_model_version", "leadbridge_scored_at")


@pytest.fixture()
def hubspot_app(settings_overrides: dict[str, Any], broker: tuple[str, str], clean_db: Database,
                hubspot_sandbox: SandboxCRM) -> Iterator[Any]:
    """The app with HubSpot configured against the sandbox CRM."""
    from bridge import create_app

    app = create_app({**settings_overrides, "broker_url": broker[0], "public_url": "http://localhost",
                      "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN,
                      "hubspot_base_url": hubspot_sandbox.base_url})
    app.testing = True
    yield app
    app.extensions["leadbridge"].db.dispose()


def shown(crm: SandboxCRM, object_type: str, record_id: str) -> dict[str, Any]:
    props = crm.store.hs_get(object_type, record_id)["properties"]
    return {name: props.get(name) for name in LEADBRIDGE}


def test_a_scored_contact_keeps_what_it_shows(hubspot_app: Any, sandbox: SandboxCRM, clean_db: Database,
                                              make_token: Callable[[str], str]) -> None:
    contact = sandbox.store.hs_create("contacts", {"email": "ana@acme.io", "firstname": "Ana"})["id"]
    scored_at = utcnow() - timedelta(hours=2)
    with clean_db.session() as session:
        session.add_all(with_ids(Lead(email="ana@acme.io", properties={}, score=91, grade="A",
                                      reasons=["+ requested a demo", "- free e-mail domain"], model_version="m7",
                                      scored_at=scored_at), hubspot=contact))
    # What the writeback wrote when it scored her: the record shows tier "hot" and grade "A".
    HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).write_fields(
        {contact: shown_values(91, "A", ["+ requested a demo", "- free e-mail domain"], "m7", scored_at)})
    before = shown(sandbox, "contacts", contact)
    assert before["leadbridge_tier"] == "hot" and before["leadbridge_grade"] == "A"

    client = hubspot_app.test_client()
    answer = client.post("/api/field-mappings/test-write", json={"crm": "hubspot", "record_id": contact},
                         headers={"Authorization": f"Bearer {make_token('admin')}"})
    assert answer.status_code == 200, answer.json
    assert answer.json["written"] is True
    assert answer.json["fields"]["leadbridge_tier"] == "hot" and answer.json["fields"]["leadbridge_grade"] == "A"
    assert shown(sandbox, "contacts", contact) == before
    writes = sandbox.requests.query(path=r"/crm/v3/objects/contacts/batch/update$")
    assert len(writes) == 2  # the writeback's and the test write's: it did reach the CRM


def test_an_unknown_or_unscored_contact_is_refused_and_untouched(hubspot_app: Any, sandbox: SandboxCRM,
                                                                 clean_db: Database,
                                                                 make_token: Callable[[str], str]) -> None:
    values = {"leadbridge_score": "64", "leadbridge_grade": "C", "leadbridge_tier": "warm",
              "leadbridge_reasons": "+ webinar", "leadbridge_model_version": "m6"}
    stranger = sandbox.store.hs_create("contacts", {"email": "sam@else.io", **values})["id"]
    unscored = sandbox.store.hs_create("contacts", {"email": "kim@acme.io", **values})["id"]
    with clean_db.session() as session:
        session.add_all(with_ids(Lead(email="kim@acme.io", properties={}), hubspot=unscored))
    headers = {"Authorization": f"Bearer {make_token('admin')}"}
    client = hubspot_app.test_client()
    for record, reason in ((stranger, "not one of leadbridge's leads"), (unscored, "not scored yet")):
        before = shown(sandbox, "contacts", record)
        answer = client.post("/api/field-mappings/test-write", json={"crm": "hubspot", "record_id": record},
                             headers=headers)
        assert answer.status_code == 409, answer.json
        assert reason in answer.json["message"] and "Nothing was written" in answer.json["message"]
        assert shown(sandbox, "contacts", record) == before
    assert sandbox.requests.query(path=r"/batch/update$") == []
    with clean_db.session() as session:  # a refusal changes nothing, so there is nothing to audit
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "field_mapping.test_write")) == 0


def test_the_admin_page_shows_the_refusal(hubspot_app: Any, sandbox: SandboxCRM, make_user: Callable[..., Any]
                                          ) -> None:
    stranger = sandbox.store.hs_create("contacts", {"email": "sam@else.io", "leadbridge_tier": "hot"})["id"]
    client = hubspot_app.test_client()
    assert log_in(client, make_user("admin").email).status_code == 302
    page = client.get("/admin/mappings")
    answer = client.post("/admin/mappings/test-write", data={"crm": "hubspot", "record_id": stranger,
                                                             "object_type": "contacts",
                                                             "csrf_token": csrf_of(page.text),
                                                             "next": "/admin/mappings"}, follow_redirects=True)
    assert answer.status_code == 200 and answer.request.path == "/admin/mappings"
    assert "leadbridge holds no values for HubSpot contacts" in answer.text and "Nothing was written" in answer.text
    assert sandbox.store.hs_get("contacts", stranger)["properties"]["leadbridge_tier"] == "hot"


def test_a_scored_company_keeps_what_it_shows(hubspot_app: Any, sandbox: SandboxCRM, clean_db: Database,
                                              make_token: Callable[[str], str]) -> None:
    company = sandbox.store.hs_create("companies", {"name": "Acme", "domain": "acme.io"})["id"]
    scored_at = utcnow() - timedelta(hours=1)
    with clean_db.session() as session:
        session.add_all(with_ids(Account(name="Acme", domain="acme.io", properties={}, score=52, grade="B",
                                         reasons=["+ 3 engaged contacts"], scored_at=scored_at), hubspot=company))
    # What the account writer (tasks.learning) wrote, with the model version it derives at write time and the tier
    # of the bands in force.
    with clean_db.session() as session:
        tier = tier_of(52, cutoffs_in_force(hubspot_app.extensions["leadbridge"].redis, session))
    HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).write_fields(
        {company: {"score": 52, "grade": "B", "reasons": ["+ 3 engaged contacts"], "tier": tier,
                   "model_version": "account:rules", "scored_at": scored_at}}, object_type="companies")
    before = shown(sandbox, "companies", company)
    answer = hubspot_app.test_client().post(
        "/api/field-mappings/test-write", json={"crm": "hubspot", "record_id": company, "object_type": "companies"},
        headers={"Authorization": f"Bearer {make_token('admin')}"})
    assert answer.status_code == 200 and answer.json["written"] is True, answer.json
    assert "leadbridge_model_version" not in answer.json["fields"]  # not held per account: left alone
    assert shown(sandbox, "companies", company) == before
