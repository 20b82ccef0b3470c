"""/api/fields: the feature schema as JSON. Map, list, unmap and history against the sandbox CRM through the real
HubSpot SDK; every refusal names its problem and changes nothing; viewers read, only admins write."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.hubspot.client import HubSpotConnector
from core.feature_schema import MappedField
from core.keys import FEATURE_SCHEMA_KEY
from core.records import utcnow
from core.runtime import redis_client as make_redis_client
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from storage.db import Database
from storage.models import AuditEntry, FeatureSchemaVersion, ModelVersion


def _app(settings_overrides: dict[str, Any], broker: tuple[str, str], **crm: Any) -> Any:
    from bridge import create_app

    app = create_app({**settings_overrides, "broker_url": broker[0], "public_url": "http://localhost", **crm})
    app.testing = True
    return app


def add_properties(sandbox: SandboxCRM) -> None:
    """Two custom contact properties in the sandbox CRM, filled on a few contacts."""
    properties = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).api.crm.properties.core_api
    properties.create("contacts", {"name": "seats", "label": "Seats", "type": "number", "fieldType": "number",
                                   "groupName": "contactinformation"})
    properties.create("contacts", {
        "name": "plan_tier", "label": "Plan tier", "type": "enumeration", "fieldType": "select",
        "groupName": "contactinformation",
        "options": [{"label": o, "value": o, "hidden": False} for o in ("starter", "pro")]})
    for i in range(4):
        sandbox.store.hs_create("contacts", {"email": f"c{i}@acme.io", "seats": str(10 * (i + 1)),
                                             "plan_tier": "pro" if i % 2 else "starter"})


@pytest.fixture()
def hubspot_app(settings_overrides: dict[str, Any], broker: tuple[str, str], clean_db: Database,
                sandbox: SandboxCRM) -> Iterator[Any]:
    """The app with HubSpot configured against the sandbox CRM, which holds the custom properties."""
    add_properties(sandbox)
    app = _app(settings_overrides, broker, hubspot_access_token=DEFAULT_HUBSPOT_TOKEN,
               hubspot_base_url=sandbox.base_url)
    yield app
    app.extensions["leadbridge"].db.dispose()


def caller(app: Any, token: str | None) -> Callable[..., Any]:
    """Call /api<path> with `token` as the bearer token (none: anonymous)."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return client.open("/api" + path, method=method, headers=headers, **kwargs)

    return call


def published(redis_url: str) -> str | None:
    """The schema version workers were told."""
    raw = make_redis_client(redis_url).get(FEATURE_SCHEMA_KEY)
    return None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))


def test_map_list_unmap_and_history(hubspot_app: Any, make_token: Callable[[str], str], clean_db: Database,
                                    redis_url: str) -> None:
    api = caller(hubspot_app, make_token("admin"))
    empty = api("GET", "/fields")
    assert empty.status_code == 200 and empty.json["version"] == 0 and empty.json["fields"] == []

    seats = api("PUT", "/fields/hubspot/contacts/seats", json={"kind": "numeric", "fit": True})
    assert seats.status_code == 200, seats.json
    assert seats.json["version"] == 1 and seats.json["warnings"] == []
    # The label comes from the CRM when none is given (CSV exports head the column with it).
    assert seats.json["fields"] == [{"crm": "hubspot", "object_type": "contacts", "property": "seats",
                                     "kind": "numeric", "feature": "seats", "label": "Seats", "fit": True,
                                     "top_n": 20}]
    assert published(redis_url) == "1"

    # The object may be spelled as people write it; the stored field keeps the CRM's spelling.
    plan = api("PUT", "/fields/hubspot/Contact/plan_tier", json={"kind": "categorical", "top_n": 5,
                                                                  "feature": "plan", "label": "Plan"})
    assert plan.status_code == 200, plan.json
    assert plan.json["version"] == 2
    listed = api("GET", "/fields").json
    assert listed["version"] == 2 and listed["fingerprint"] == plan.json["fingerprint"]
    assert [(f["property"], f["object_type"], f["kind"], f["feature"], f["label"], f["top_n"])
            for f in listed["fields"]] == [("seats", "contacts", "numeric", "seats", "Seats", 20),
                                           ("plan_tier", "contacts", "categorical", "plan", "Plan", 5)]

    same = api("PUT", "/fields/hubspot/contacts/plan_tier", json={"kind": "categorical", "top_n": 5,
                                                                   "feature": "plan", "label": "Plan"})
    assert same.status_code == 200 and same.json["version"] == 2  # nothing changed: no new version

    gone = api("DELETE", "/fields/hubspot/contacts/seats")
    assert gone.status_code == 200, gone.json
    assert gone.json["version"] == 3 and [f["property"] for f in gone.json["fields"]] == ["plan_tier"]
    assert published(redis_url) == "3"

    history = api("GET", "/fields/history")
    assert history.status_code == 200
    items = history.json["items"]
    assert [i["version"] for i in items] == [3, 2, 1]
    assert all(i["actor"].endswith("(api token)") and "@example.com" in i["actor"] for i in items)
    assert items[0]["changes"] == ["unmapped hubspot contacts.seats (feature seats)"]
    assert items[1]["changes"] == ["mapped hubspot contacts.plan_tier as categorical feature plan"]
    assert items[2]["changes"] == ["mapped hubspot contacts.seats as numeric feature seats"]
    assert [f["property"] for f in items[1]["fields"]] == ["seats", "plan_tier"]
    assert [i["version"] for i in api("GET", "/fields/history?limit=1").json["items"]] == [3]
    # The oldest version on a short page still says what it changed against the one before it.
    assert api("GET", "/fields/history?limit=2").json["items"][1]["changes"] == items[1]["changes"]
    with clean_db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action == "fields.schema")) == 3


def champion_reading(db: Database, tmp_path: Path, field: MappedField) -> str:
    """Register a serving lead model whose bundle says it was trained on `field` (its metadata is all the
    schema check reads)."""
    bundle = tmp_path / "champion"
    bundle.mkdir()
    (bundle / "metadata.json").write_text(json.dumps({
        "feature_schema": {"version": 1, "fields": [field.to_json()]},
        "main": {"input_columns": ["pricing_views_7d", field.feature]}}))
    with db.session() as session:
        session.add(ModelVersion(version="lead-schema-1", kind="lead", status="champion", path=str(bundle),
                                 feature_hash="0" * 64, features=[field.feature], trained_at=utcnow(),
                                 promoted_at=utcnow()))
    return "lead-schema-1"


def state(db: Database, redis_url: str) -> tuple[int, list[Any], str | None]:
    """(versions saved, the newest one's fields, the version workers were told)."""
    with db.session() as session:
        rows = list(session.scalars(select(FeatureSchemaVersion).order_by(FeatureSchemaVersion.version)))
        return len(rows), (rows[-1].fields if rows else []), published(redis_url)


def test_refusals_name_the_problem_and_change_nothing(hubspot_app: Any, make_token: Callable[[str], str],
                                                      clean_db: Database, redis_url: str, tmp_path: Path) -> None:
    api = caller(hubspot_app, make_token("admin"))
    assert api("PUT", "/fields/hubspot/contacts/seats", json={"kind": "numeric"}).status_code == 200
    before = state(clean_db, redis_url)
    assert before[0] == 1 and before[2] == "1"

    refusals: list[tuple[str, str, dict[str, Any] | None, int, str, tuple[str, ...]]] = [
        ("PUT", "/fields/hubspot/contacts/no_such_thing", {"kind": "numeric"}, 400, "unknown_property",
         ("has no property", "no_such_thing")),
        ("PUT", "/fields/hubspot/contacts/plan_tier", {"kind": "colour"}, 400, "invalid_request", ("body.kind",)),
        ("PUT", "/fields/hubspot/contacts/plan_tier", {"kind": "categorical", "top_n": 0}, 400, "invalid_request",
         ("body.top_n",)),
        ("PUT", "/fields/hubspot/contacts/plan_tier", {"kind": "categorical", "top_n": 501}, 400,
         "invalid_request", ("body.top_n",)),
        ("PUT", "/fields/hubspot/contacts/plan_tier", {"kind": "categorical", "feature": "industry"}, 400,
         "invalid_request", ("'industry'", "built-in")),
        ("PUT", "/fields/hubspot/contacts/plan_tier", {"kind": "categorical", "feature": "seats"}, 400,
         "invalid_request", ("duplicate feature 'seats'",)),
        ("PUT", "/fields/hubspot/contacts/leadbridge_score", {"kind": "numeric"}, 400, "invalid_request",
         ("leadbridge_score", "leadbridge writes")),
        ("PUT", "/fields/hubspot/contacts/hubspot_owner_id", {"kind": "categorical"}, 400, "invalid_request",
         ("hubspot_owner_id", "owner")),
        ("PUT", "/fields/hubspot/Lead/seats", {"kind": "numeric"}, 400, "invalid_request",
         ("hubspot properties can be mapped on contacts", "'Lead'")),
        ("PUT", "/fields/hubspot/contacts/Bad-Name", {"kind": "numeric"}, 400, "invalid_request", ("'Bad-Name'",)),
        ("PUT", "/fields/hubspot/contacts/plan_tier", {"kind": "categorical", "colour": "red"}, 400,
         "invalid_request", ("body.colour",)),
        ("DELETE", "/fields/hubspot/contacts/plan_tier", None, 404, "not_found", ("plan_tier", "not mapped")),
        ("PUT", "/fields/pipedrive/contacts/seats", {"kind": "numeric"}, 404, "not_found", ("crm",)),
    ]
    for method, path, body, status, code, words in refusals:
        answer = api(method, path, **({"json": body} if body is not None else {}))
        assert (answer.status_code, answer.json["error"]) == (status, code), (path, body, answer.json)
        assert all(w in answer.json["message"] for w in words), (path, body, answer.json["message"])
        assert state(clean_db, redis_url) == before, (path, body)

    # A change the serving model depends on is refused (409) unless forced.
    version = champion_reading(clean_db, tmp_path, MappedField("hubspot", "contacts", "seats", "numeric", "seats"))
    for method, path, body in (("DELETE", "/fields/hubspot/contacts/seats", None),
                               ("PUT", "/fields/hubspot/contacts/seats", {"kind": "text"}),
                               ("PUT", "/fields/hubspot/contacts/seats", {"kind": "numeric", "feature": "seat_count"})):
        answer = api(method, path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 409 and answer.json["error"] == "schema_in_use", answer.json
        assert f"serving lead model {version}" in answer.json["message"] and "'seats'" in answer.json["message"]
        assert state(clean_db, redis_url) == before
    # A label or fit flag is no dependency of the model: that change goes through.
    relabel = api("PUT", "/fields/hubspot/contacts/seats", json={"kind": "numeric", "label": "Licensed seats"})
    assert relabel.status_code == 200 and relabel.json["version"] == 2
    forced = api("DELETE", "/fields/hubspot/contacts/seats?force=true")
    assert forced.status_code == 200 and forced.json["version"] == 3 and forced.json["fields"] == []


def test_viewers_read_and_only_admins_write(hubspot_app: Any, make_token: Callable[[str], str],
                                            clean_db: Database, redis_url: str) -> None:
    admin, viewer, anonymous = (caller(hubspot_app, make_token("admin")), caller(hubspot_app, make_token("viewer")),
                                caller(hubspot_app, None))
    assert admin("PUT", "/fields/hubspot/contacts/seats", json={"kind": "numeric"}).status_code == 200
    before = state(clean_db, redis_url)
    assert viewer("GET", "/fields").json["fields"][0]["property"] == "seats"
    assert [i["version"] for i in viewer("GET", "/fields/history").json["items"]] == [1]
    for method, path, body in (("PUT", "/fields/hubspot/contacts/plan_tier", {"kind": "categorical"}),
                               ("DELETE", "/fields/hubspot/contacts/seats", None)):
        kwargs = {"json": body} if body is not None else {}
        refused = viewer(method, path, **kwargs)
        assert refused.status_code == 403 and refused.json["error"] == "forbidden"
        assert anonymous(method, path, **kwargs).status_code == 401
        assert state(clean_db, redis_url) == before
    assert anonymous("GET", "/fields").status_code == 401


def test_a_crm_that_cannot_be_asked_maps_with_a_warning(settings_overrides: dict[str, Any],
                                                        broker: tuple[str, str], clean_db: Database,
                                                        make_token: Callable[[str], str]) -> None:
    # Not configured: Salesforce; unreachable: HubSpot at a closed port.
    app = _app(settings_overrides, broker, hubspot_access_token=DEFAULT_HUBSPOT_TOKEN,
               hubspot_base_url="http://127.0.0.1:9")
    try:
        api = caller(app, make_token("admin"))
        lead = api("PUT", "/fields/salesforce/lead/Budget__c", json={"kind": "numeric", "feature": "budget"})
        assert lead.status_code == 200, lead.json
        assert lead.json["fields"][0]["object_type"] == "Lead"
        assert len(lead.json["warnings"]) == 1 and "not checked" in lead.json["warnings"][0]
        assert "Salesforce is not configured" in lead.json["warnings"][0]
        hub = api("PUT", "/fields/hubspot/contacts/budget", json={"kind": "numeric"})
        assert hub.status_code == 200 and hub.json["version"] == 2
        assert "not checked" in hub.json["warnings"][0] and "could not be reached" in hub.json["warnings"][0]
        # A local refusal needs no CRM: it is refused before the CRM is asked.
        clash = api("PUT", "/fields/hubspot/contacts/country", json={"kind": "categorical"})
        assert clash.status_code == 400 and "built-in" in clash.json["message"]
    finally:
        app.extensions["leadbridge"].db.dispose()
