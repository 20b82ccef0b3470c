"""A real worker process reaches the sandbox's Salesforce with SALESFORCE_SANDBOX_URL set (simple-salesforce
hard-codes https; the setting routes its calls over plain http), as sandbox mode's workers do."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from connectors.registry import build_connector
from connectors.salesforce.client import SalesforceConnector
from core.settings import load_settings
from sandbox import DEFAULT_SF_SESSION, SandboxCRM
from storage.models import Lead, LeadCrmId
from tests.connectors.conftest import Receiver, receiver  # noqa: F401 - receiver: fixture
from tests.hostile import hubspot_event, raw_json
from tests.processes import wait_for
from tests.tasks.conftest import SALESFORCE_ORG, LivePipeline
from tests.tasks.test_salesforce_conversion import Deliveries, leads_of, new_lead, shown_score
from tests.tasks.test_score_movement import hubspot_shown


@pytest.fixture()
def worker_env(sandbox: SandboxCRM) -> dict[str, str]:
    """The worker's Salesforce: the sandbox's org, by session id, routed by the new setting."""
    return {"SALESFORCE_SESSION_ID": DEFAULT_SF_SESSION, "SALESFORCE_SANDBOX_URL": sandbox.base_url}


def routed_connector(sandbox: SandboxCRM, settings_overrides: dict[str, Any]) -> SalesforceConnector:
    """The connector build_connector makes from the same settings the worker has."""
    settings = load_settings({**settings_overrides, "salesforce_session_id": DEFAULT_SF_SESSION,
                              "salesforce_sandbox_url": sandbox.base_url}, env_file=None)
    connector = build_connector("salesforce", settings)
    assert isinstance(connector, SalesforceConnector)
    return connector


@pytest.mark.slow
def test_a_worker_process_writes_a_salesforce_leads_score_to_the_sandbox(
        live_pipeline: LivePipeline, receiver: Receiver, settings_overrides: dict[str, Any]) -> None:  # noqa: F811
    p = live_pipeline
    connector = routed_connector(p.sandbox, settings_overrides)
    report = connector.provision_fields(create=True)
    assert not report.missing
    feed = Deliveries(p.sandbox, receiver, SALESFORCE_ORG)
    mark = feed.mark()
    lead_sf = new_lead(p.sandbox, "ana@acme.io")
    requests.delete(p.sandbox.base_url + "/_sandbox/requests", timeout=5)

    answer = p.signer.salesforce_soap(p.salesforce, feed.after(mark, "Lead", lead_sf))
    assert answer.status_code == 200, answer.data
    wait_for(lambda: shown_score(p.sandbox, "Lead", lead_sf) is not None, 90, "the worker writing the Lead's score")

    with p.db.session() as session:
        score, grade = session.execute(select(Lead.score, Lead.grade).join(LeadCrmId, LeadCrmId.lead_id == Lead.id)
                                      .where(LeadCrmId.object_id == lead_sf)).one()
    # Read back through simple-salesforce as any client would: the score, grade and tier the worker computed.
    [row] = connector.sf.query(f"SELECT Id, Leadbridge_Score__c, Leadbridge_Grade__c, Leadbridge_Tier__c "
                               f"FROM Lead WHERE Id = '{lead_sf}'")["records"]
    assert int(row["Leadbridge_Score__c"]) == score and row["Leadbridge_Grade__c"] == grade
    assert row["Leadbridge_Tier__c"]
    # The write came over the sandbox's Salesforce REST API (the worker's SDK), not its admin API.
    logged = requests.get(p.sandbox.base_url + "/_sandbox/requests", timeout=5,
                          params={"path": "/services/data/.*/(sobjects|composite)"}).json()["requests"]
    assert any(r["method"] in ("PATCH", "POST") for r in logged), logged


@pytest.mark.slow
def test_one_person_in_both_crms_becomes_one_lead_written_to_both(
        live_pipeline: LivePipeline, receiver: Receiver, settings_overrides: dict[str, Any]) -> None:  # noqa: F811
    """A HubSpot creation webhook carries no e-mail: the contact's lead learns it from enrichment, after the same
    person's Salesforce Lead became a lead of its own. Enrichment folds them: one lead, both records, one score."""
    p = live_pipeline
    connector = routed_connector(p.sandbox, settings_overrides)
    assert not connector.provision_fields(create=True).missing
    feed = Deliveries(p.sandbox, receiver, SALESFORCE_ORG)
    mark = feed.mark()
    lead_sf = new_lead(p.sandbox, "ana@acme.io")
    answer = p.signer.salesforce_soap(p.salesforce, feed.after(mark, "Lead", lead_sf))
    assert answer.status_code == 200, answer.data
    wait_for(lambda: shown_score(p.sandbox, "Lead", lead_sf) is not None, 90, "the Lead's first score")
    [(first, _)] = leads_of(p.db, "ana@acme.io")

    contact = p.sandbox.store.hs_create("contacts", {"email": "ana@acme.io", "firstname": "Ana",
                                                     "jobtitle": "Head of Sales"})
    created = hubspot_event(objectId=int(contact["id"]), subscriptionType="contact.creation")
    for name in ("propertyName", "propertyValue"):
        created.pop(name)
    response = p.signer.hubspot(p.hubspot, raw_json([created]))
    assert response.status_code == 202, response.get_data(as_text=True)

    def records() -> list[tuple[int, set[str]]]:
        return leads_of(p.db, "ana@acme.io")

    wait_for(lambda: records() == [(first, {lead_sf, contact["id"]})], 90, "the contact folded into the Lead's lead")
    with p.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead).where(Lead.email == "ana@acme.io")) == 1

    def both_show_the_lead() -> bool:
        with p.db.session() as session:
            score = session.scalar(select(Lead.score).where(Lead.id == first))
        shown = hubspot_shown(p.sandbox, contact["id"])["score"]
        return (score is not None and shown is not None and round(float(shown)) == score
                and shown_score(p.sandbox, "Lead", lead_sf) == score)

    wait_for(both_show_the_lead, 90, "the one lead's score on the HubSpot contact and the Salesforce Lead")
