"""HubSpot connector + sandbox over real HTTP with the real hubspot-api-client."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInput
from hubspot.crm.contacts.exceptions import ApiException
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

from connectors.base import AuthConnectorError, CrmConnector, PermanentConnectorError
from connectors.hubspot.client import HubSpotConnector, property_specs
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM

from ..conftest import admin


def _seed_contacts(crm: SandboxCRM, n: int, with_company: bool = True) -> list[str]:
    ids = []
    company = crm.store.hs_create("companies", {"name": "Acme", "domain": "acme.io", "industry": "Software",
                                                "numberofemployees": "250", "country": "DE"}, source="CRM_UI")
    for i in range(n):
        obj = crm.store.hs_create("contacts", {"email": f"p{i}@acme.io", "firstname": f"P{i}", "lastname": "Lopez",
                                               "jobtitle": "VP Marketing"}, source="CRM_UI")
        if with_company:
            crm.store.hs_associate("contacts", obj["id"], "companies", company["id"], [279, 1])
        ids.append(obj["id"])
    return ids


def test_connector_satisfies_protocol(hubspot: HubSpotConnector) -> None:
    assert isinstance(hubspot, CrmConnector)


def test_provisioning_twice_changes_nothing(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    first = hubspot.provision_fields()
    assert first.ok
    assert len(first.created) == 2 + len(property_specs())  # two groups + every property
    snapshot = {t: dict(sandbox.store.hs_properties[t]) for t in ("contacts", "companies")}
    second = hubspot.provision_fields()
    assert second.created == ()
    assert sorted(second.existing) == sorted(s.full_name for s in property_specs())
    assert {t: dict(sandbox.store.hs_properties[t]) for t in ("contacts", "companies")} == snapshot
    prop = sandbox.store.hs_properties["contacts"]["leadbridge_grade"]
    assert prop["groupName"] == "leadbridge" and [o["value"] for o in prop["options"]] == list("ABCDEF")


def test_property_create_conflict_is_409_from_sandbox(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    hubspot.provision_fields()
    api = HubSpot(access_token=DEFAULT_HUBSPOT_TOKEN, host=sandbox.base_url)
    with pytest.raises(PropertiesApiException) as info:
        api.crm.properties.core_api.create("contacts", dict(property_specs()[0].metadata))
    assert info.value.status == 409


def test_check_without_create_reports_missing(hubspot: HubSpotConnector) -> None:
    report = hubspot.provision_fields(create=False)
    assert not report.ok
    assert {s.name for s in report.missing} == {s.name for s in property_specs()}
    assert any("group" in p for p in report.problems)


def test_read_leads_with_company_in_batches(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    ids = _seed_contacts(sandbox, 130)
    since = sandbox.requests.query()[-1]["t"] if sandbox.requests.query() else 0.0
    result = hubspot.read_leads(ids + ["999999"])
    assert [r.lead.id for r in result] == ids  # unknown id left out, order kept
    first = result[0]
    assert first.lead.email == "p0@acme.io" and first.lead.title == "VP Marketing"
    assert first.account is not None and first.account.name == "Acme" and first.account.employees == 250
    assert first.lead.account_id == first.account.id == first.account.crm_ids["hubspot"]
    batch_reads = [r for r in sandbox.requests.query(since, path=r"/crm/v3/objects/contacts/batch/read$")]
    assert len(batch_reads) == 2  # 131 ids -> 100 + 31


def test_write_fields_chunks_above_100(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    hubspot.provision_fields()
    ids = _seed_contacts(sandbox, 230, with_company=False)
    scored_at = datetime(2024, 6, 3, 16, 0, tzinfo=UTC)
    updates = {cid: {"score": 87, "grade": "A", "reasons": ["+ viewed pricing 4x in 7 days", "- free e-mail domain"],
                     "model_version": "v1", "scored_at": scored_at} for cid in ids}
    updates["424242"] = {"score": 10}
    result = hubspot.write_fields(updates)
    assert result.calls == 3
    assert sorted(result.written) == sorted(ids)
    assert "424242" in result.failed and "OBJECT_NOT_FOUND" in result.failed["424242"]
    stored = sandbox.store.hs_get("contacts", ids[-1])["properties"]
    assert stored["leadbridge_score"] == "87" and stored["leadbridge_grade"] == "A"
    assert stored["leadbridge_reasons"] == "+ viewed pricing 4x in 7 days\n- free e-mail domain"
    assert stored["leadbridge_scored_at"] == str(int(scored_at.timestamp() * 1000))
    calls = sandbox.requests.query(path=r"/crm/v3/objects/contacts/batch/update$")
    assert [c["status"] for c in calls] == [200, 200, 207]
    writes = [w for w in sandbox.store.writes_since(prefix="leadbridge_") if w["property"] == "leadbridge_score"]
    assert len(writes) == 230 and all(w["t_ns"] > 0 for w in writes)


def test_shows_fields_tells_which_records_already_show_the_values(sandbox: SandboxCRM,
                                                                   hubspot: HubSpotConnector) -> None:
    """Reading back a write whose outcome is unknown: scored_at aside, every field must match."""
    hubspot.provision_fields()
    ids = _seed_contacts(sandbox, 150, with_company=False)
    values = {"score": 64, "grade": "B", "reasons": ["+ requested a demo", "- free e-mail domain"], "tier": "warm",
              "model_version": "rules:v1", "scored_at": datetime(2024, 6, 3, 16, 0, tzinfo=UTC)}
    hubspot.write_fields({cid: values for cid in ids[:120]})
    sandbox.store.hs_update("contacts", ids[7], {"leadbridge_reasons": "+ something else"}, source="CRM_UI")
    later = {**values, "scored_at": datetime(2024, 6, 4, tzinfo=UTC)}  # a later scored_at does not matter
    shown = hubspot.shows_fields({cid: later for cid in [*ids, "424242"]})
    assert shown == set(ids[:120]) - {ids[7]}
    assert len(sandbox.requests.query(path=r"/crm/v3/objects/contacts/batch/read$")) == 2  # 100 a call


def test_sandbox_rejects_101_inputs(sandbox: SandboxCRM) -> None:
    api = HubSpot(access_token=DEFAULT_HUBSPOT_TOKEN, host=sandbox.base_url)
    body = BatchInputSimplePublicObjectBatchInput(inputs=[{"id": str(i), "properties": {"firstname": "x"}}
                                                          for i in range(101)])
    with pytest.raises(ApiException) as info:
        api.crm.contacts.batch_api.update(body)
    assert info.value.status == 400
    assert "no more than 100 inputs" in info.value.body and "VALIDATION_ERROR" in info.value.body


def test_write_before_provisioning_is_permanent_with_vendor_message(sandbox: SandboxCRM,
                                                                    hubspot: HubSpotConnector) -> None:
    ids = _seed_contacts(sandbox, 1, with_company=False)
    with pytest.raises(PermanentConnectorError) as info:
        hubspot.write_fields({ids[0]: {"score": 50}})
    assert info.value.status == 400
    assert "PROPERTY_DOESNT_EXIST" in info.value.vendor_message and "leadbridge_score" in info.value.vendor_message
    assert info.value.__cause__ is not None


def test_search_contacts(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    hubspot.provision_fields()
    ids = _seed_contacts(sandbox, 5, with_company=False)
    hubspot.write_fields({ids[1]: {"score": 91}, ids[3]: {"score": 75}, ids[4]: {"score": 20}})
    hot = hubspot.search_contacts([{"propertyName": "leadbridge_score", "operator": "GTE", "value": "70"}],
                                  sorts=[{"propertyName": "leadbridge_score", "direction": "DESCENDING"}])
    assert [lead.id for lead in hot] == [ids[1], ids[3]]
    by_email = hubspot.search_contacts([{"propertyName": "email", "operator": "IN", "values": ["p4@acme.io"]}])
    assert [lead.id for lead in by_email] == [ids[4]]


def test_outcomes_from_deals_and_lifecycle(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    ids = _seed_contacts(sandbox, 4, with_company=False)
    store = sandbox.store
    won = store.hs_create("deals", {"dealname": "Acme", "dealstage": "closedwon", "closedate": "2024-06-01T00:00:00Z"})
    lost = store.hs_create("deals", {"dealname": "Acme 2", "dealstage": "closedlost"})
    open_deal = store.hs_create("deals", {"dealname": "Acme 3", "dealstage": "qualifiedtobuy"})
    store.hs_associate("deals", won["id"], "contacts", ids[0])
    store.hs_associate("deals", lost["id"], "contacts", ids[1])
    store.hs_associate("deals", open_deal["id"], "contacts", ids[2])
    store.hs_update("contacts", ids[3], {"lifecyclestage": "customer"}, source="CRM_UI")
    outcomes = {o.lead_id: o for o in hubspot.read_outcomes()}
    assert set(outcomes) == {ids[0], ids[1], ids[3]}
    assert outcomes[ids[0]].won and outcomes[ids[0]].occurred_at == datetime(2024, 6, 1, tzinfo=UTC)
    assert not outcomes[ids[1]].won
    assert outcomes[ids[3]].won and outcomes[ids[3]].source == "hubspot.lifecyclestage"


def test_bad_token_is_auth_error_without_retries(sandbox: SandboxCRM) -> None:
    connector = HubSpotConnector("pat-wrong", base_url=sandbox.base_url)
    with pytest.raises(AuthConnectorError) as info:
        connector.read_leads(["1"])
    assert info.value.status == 401 and "Authentication credentials not found" in info.value.vendor_message
    assert len(sandbox.requests.query(family="hubspot")) == 1  # no retries on auth errors


def test_rate_limit_429_body_and_headers(make_sandbox) -> None:  # type: ignore[no-untyped-def]
    crm = make_sandbox(hubspot_rate_max=3, hubspot_rate_window=10.0)
    api = HubSpot(access_token=DEFAULT_HUBSPOT_TOKEN, host=crm.base_url)
    body = {"inputs": [{"id": "1"}], "properties": ["email"], "propertiesWithHistory": []}
    for _ in range(3):
        api.crm.contacts.batch_api.read(body)
    # POST is not retried by urllib3 (HUBSPOT.md §0), so the 429 reaches the caller.
    with pytest.raises(ApiException) as info:
        api.crm.contacts.batch_api.read(body)
    exc = info.value
    assert exc.status == 429
    assert '"errorType": "RATE_LIMIT"' in exc.body and "TEN_SECONDLY_ROLLING" in exc.body
    assert exc.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert exc.headers["X-HubSpot-RateLimit-Max"] == "3"
    assert 1 <= int(exc.headers["Retry-After"]) <= 10
    assert admin(crm, "GET", "/requests", params={"family": "hubspot"}).json()["requests"][-1]["status"] == 429


def test_v4_batch_associations_default_and_labelled(sandbox: SandboxCRM) -> None:
    """The SDK's v4 batch associate calls (default type, explicit type) link records; an unknown id is a 404."""
    from hubspot.crm.associations.v4 import (BatchInputPublicAssociationMultiPost,
                                             BatchInputPublicDefaultAssociationMultiPost)
    from hubspot.crm.associations.v4.exceptions import ApiException as AssocApiException

    [a, b] = _seed_contacts(sandbox, 2, with_company=False)
    company = sandbox.store.hs_create("companies", {"name": "Initech", "domain": "initech.com"}, source="CRM_UI")["id"]
    batch = HubSpot(access_token=DEFAULT_HUBSPOT_TOKEN, host=sandbox.base_url).crm.associations.v4.batch_api
    made = batch.create_default("contacts", "companies", BatchInputPublicDefaultAssociationMultiPost(
        inputs=[{"from": {"id": a}, "to": {"id": company}}]))
    assert [(r._from.id, r.to.id, r.association_spec.association_type_id) for r in made.results] == [(a, company, 279)]
    labelled = batch.create("contacts", "companies", BatchInputPublicAssociationMultiPost(inputs=[
        {"from": {"id": b}, "to": {"id": company},
         "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}]))
    assert [(r.from_object_id, r.to_object_id) for r in labelled.results] == [(b, company)]
    assert {tid for tid, _ in sandbox.store.hs_associations("contacts", b, "companies")} == {company}
    with pytest.raises(AssocApiException) as info:
        batch.create_default("contacts", "companies", BatchInputPublicDefaultAssociationMultiPost(
            inputs=[{"from": {"id": "999999"}, "to": {"id": company}}]))
    assert info.value.status == 404
