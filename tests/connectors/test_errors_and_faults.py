"""Error mapping through injected faults: the real SDKs over HTTP, timing read from the sandbox's request log."""

from __future__ import annotations

import pytest

from connectors.base import AuthConnectorError, PermanentConnectorError, TransientConnectorError
from connectors.hubspot.client import HubSpotConnector
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM

from .conftest import admin, salesforce_for

BATCH_READ = r"/crm/v3/objects/contacts/batch/read$"


def _contact(crm: SandboxCRM) -> str:
    return crm.store.hs_create("contacts", {"email": "ana@acme.io"}, source="CRM_UI")["id"]


def _fault(crm: SandboxCRM, **spec: object) -> None:
    resp = admin(crm, "POST", "/faults", json=spec)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("status,error", [(400, PermanentConnectorError), (404, PermanentConnectorError),
                                          (401, AuthConnectorError), (403, AuthConnectorError)])
def test_hubspot_4xx_mapping_without_retries(sandbox: SandboxCRM, hubspot: HubSpotConnector, status: int,
                                             error: type) -> None:
    cid = _contact(sandbox)
    _fault(sandbox, route=BATCH_READ, status=status, count=1)
    with pytest.raises(error) as info:
        hubspot.read_leads([cid])
    assert info.value.status == status and info.value.vendor == "hubspot"
    assert "injected fault" in info.value.vendor_message or status == 401
    assert isinstance(info.value.__cause__, Exception)  # chained to the SDK exception
    assert len(sandbox.requests.query(path=BATCH_READ)) == 1  # permanent and auth errors are not retried


def test_hubspot_429_retry_after_is_honoured(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    _fault(sandbox, route=BATCH_READ, status=429, retry_after=1, count=2)
    result = hubspot.read_leads([cid])
    assert [r.lead.id for r in result] == [cid]
    calls = sandbox.requests.query(path=BATCH_READ)
    assert [c["status"] for c in calls] == [429, 429, 200]
    assert calls[0]["retry_after"] == "1"
    gaps = [calls[i + 1]["t"] - calls[i]["t_end"] for i in range(2)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # never earlier than Retry-After


def test_hubspot_500_then_success_and_exhaustion(sandbox: SandboxCRM) -> None:
    cid = _contact(sandbox)
    connector = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url, retry_attempts=3)
    _fault(sandbox, route=BATCH_READ, status=500, count=1)
    assert [r.lead.id for r in connector.read_leads([cid])] == [cid]
    _fault(sandbox, route=BATCH_READ, status=503, count=5)
    with pytest.raises(TransientConnectorError) as info:
        connector.read_leads([cid])
    assert info.value.status == 503
    statuses = [c["status"] for c in sandbox.requests.query(path=BATCH_READ)]
    assert statuses == [500, 200, 503, 503, 503]


def test_hubspot_dropped_connection_is_transient(sandbox: SandboxCRM) -> None:
    cid = _contact(sandbox)
    connector = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url, retry_attempts=2)
    _fault(sandbox, route=BATCH_READ, kind="drop", count=1)
    assert [r.lead.id for r in connector.read_leads([cid])] == [cid]
    assert [c["status"] for c in sandbox.requests.query(path=BATCH_READ)] == [0, 200]


def test_salesforce_fault_mapping(sandbox: SandboxCRM) -> None:
    connector = salesforce_for(sandbox, retry_attempts=2)
    route = r"/services/data/v[0-9.]+/query"
    for status, error in ((400, PermanentConnectorError), (404, PermanentConnectorError),
                          (401, AuthConnectorError)):
        _fault(sandbox, route=route, status=status, count=1)
        with pytest.raises(error) as info:
            connector.query_all("SELECT Id FROM Lead")
        assert info.value.status == status and info.value.code
    _fault(sandbox, route=route, status=500, count=1)
    assert connector.query_all("SELECT Id FROM Lead") == []
    _fault(sandbox, route=route, status=503, retry_after=1, count=1)
    assert connector.query_all("SELECT Id FROM Lead") == []
    calls = sandbox.requests.query(path=route)
    assert [c["status"] for c in calls] == [400, 404, 401, 500, 200, 503, 200]
    assert calls[-1]["t"] - calls[-2]["t_end"] >= 0.2  # backoff happened (Salesforce sends no Retry-After itself)


def test_slow_fault_delays_the_answer(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    cid = _contact(sandbox)
    _fault(sandbox, route=BATCH_READ, kind="slow", delay=0.3, count=1)
    hubspot.read_leads([cid])
    call = sandbox.requests.query(path=BATCH_READ)[-1]
    assert call["status"] == 200 and call["t_end"] - call["t"] >= 0.3


def test_fault_api_rejects_bad_specs(sandbox: SandboxCRM) -> None:
    for spec, word in (({"kind": "status"}, "route"), ({"route": "(", "status": 500}, "regular expression"),
                       ({"route": "/x", "kind": "explode"}, "kind"), ({"route": "/x", "status": 200}, "status"),
                       ({"route": "/x", "colour": "red"}, "unknown")):
        resp = admin(sandbox, "POST", "/faults", json=spec)
        assert resp.status_code == 400 and word in resp.json()["error"]
    assert admin(sandbox, "POST", "/faults", data="not json").status_code == 400
