"""The OpenAPI document is valid OpenAPI 3.1, describes every API route, and the real app keeps to it:
schemathesis generates valid and invalid requests for every operation and finds no 5xx and no response
that violates the document."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from bridge.api.endpoints import OPERATIONS
from core.records import utcnow
from storage.db import Database
from storage.measurements import histogram_of, slot_start
from storage.models import AlertRule, InboxEvent, Lead, Measurement, ModelVersion, ScoreHistory, User
from storage.sources import create_source
from storage.users import create_token
from tests.crm_ids import with_ids

EXAMPLES = int(12 * float(os.environ.get("LEADBRIDGE_FUZZ_SCALE", "1")))


def test_document_is_openapi_3_1_and_lists_every_route(admin_app: Any) -> None:
    client = admin_app.test_client()
    doc = client.get("/api/openapi.json").json
    assert doc["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    routed = set()
    for rule in admin_app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and rule.endpoint != "api.openapi":
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<int:{arg}>", f"{{{arg}}}").replace(f"<{arg}>", f"{{{arg}}}")
            routed |= {(m, path) for m in (rule.methods or ()) if m not in ("HEAD", "OPTIONS")}
    assert documented == routed
    assert len(OPERATIONS) == len(routed)
    # schemathesis refuses an invalid document, so loading it is the validation.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", admin_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(routed)
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            assert "default" in operation["responses"] and operation["summary"]


def test_the_overview_charts_are_documented_with_their_ranges(admin_app: Any) -> None:
    doc = admin_app.test_client().get("/api/openapi.json").json
    series = doc["paths"]["/api/overview/series"]["get"]
    (param,) = series["parameters"]
    assert param["name"] == "range" and param["in"] == "query" and not param["required"]
    assert param["schema"]["enum"] == ["hour", "day", "week"] and param["schema"]["default"] == "hour"
    assert series["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SeriesOut")
    leads = doc["paths"]["/api/overview/leads"]["get"]
    assert leads["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/LeadMixOut")
    schemas = doc["components"]["schemas"]
    assert {"bins", "received", "processed", "written", "ingest_latency", "write_latency"} <= set(
        schemas["SeriesOut"]["properties"])
    assert {"score_bands", "today", "week_ago", "reasons"} <= set(schemas["LeadMixOut"]["properties"])


@pytest.fixture()
def admin_headers(make_token: Callable[[str], str]) -> dict[str, str]:
    """An admin token's Authorization header."""
    return {"Authorization": f"Bearer {make_token('admin')}"}


def _documented_operations() -> list[tuple[str, str]]:
    from bridge.api import routes  # noqa: F401  (declares the operations)
    from bridge.api.spec import _openapi_path

    return [(op.method, _openapi_path(op.rule)) for op in OPERATIONS]


@pytest.fixture()
def existing(clean_db: Database, tmp_path: Path, make_user: Callable[..., User]) -> dict[str, Any]:
    """One row of each kind the path parameters name, so generated requests reach more than the 404 branch."""
    now = utcnow()
    other = make_user("viewer")
    with clean_db.session() as session:
        source = create_source(session, kind="events", name="seed")
        rule = AlertRule(name="seed", channel="#seed", threshold=70, cooldown_minutes=60, routing={}, enabled=True)
        lead = Lead(email="seed@example.com", properties={}, score=50, grade="C", reasons=["+ x"],
                    model_version="seed", scored_at=now)
        session.add_all([rule, *with_ids(lead, hubspot="1")])
        session.flush()
        session.add(ScoreHistory(lead_id=lead.id, score=50, probability=0.5, grade="C", reasons=["+ x"],
                                 model_version="seed", trigger="event", feature_time=now))
        row = InboxEvent(source_id=source.id, dedupe_key="seed", crm="hubspot", object_type="contact",
                         object_id="1", event_type="created", email="seed@example.com", properties={},
                         occurred_at=now, received_at=now, status="failed", attempts=1, error="seed")
        session.add(row)
        session.add(Measurement(seconds=30, started_at=slot_start(now), received=3, processed=2, written=1, backlog=1,
                                write_backlog=0, ingest_latency=histogram_of([0.01, 0.2]), write_latency=histogram_of([1.0])))
        (tmp_path / "seed").mkdir()
        (tmp_path / "seed" / "metadata.json").write_text(json.dumps({"metrics": {"roc_auc": 0.7}}))
        session.add(ModelVersion(version="seed-1", kind="lead", status="candidate", path=str(tmp_path / "seed"),
                                 feature_hash="0" * 64, features=["x"], trained_at=now))
        token = create_token(session, session.get(User, other.id), "seed")  # type: ignore[arg-type]
        session.flush()
        return {"source_id": source.id, "rule_id": rule.id, "lead_id": lead.id, "user_id": other.id,
                "token_id": token.id, "version": "seed-1", "inbox_id": row.id}


@pytest.mark.parametrize(("method", "path"), _documented_operations(), ids=lambda v: str(v))
def test_api_keeps_to_its_document(method: str, path: str, admin_app: Any, admin_headers: dict[str, str],
                                   existing: dict[str, Any]) -> None:
    operation = schemathesis.openapi.from_wsgi("/api/openapi.json", admin_app)[path][method]
    runs: list[tuple[GenerationMode, dict[str, Any] | None]] = [(GenerationMode.POSITIVE, None)]
    names = {p.name for p in operation.path_parameters}
    if names and names <= set(existing):
        runs.append((GenerationMode.POSITIVE, {name: existing[name] for name in names}))
    if operation.body or operation.query or operation.path_parameters:
        runs.append((GenerationMode.NEGATIVE, None))  # invalid input must be a 4xx with the documented error body
    for mode, path_parameters in runs:

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(headers=admin_headers, checks=[not_a_server_error, response_schema_conformance])

        run()
