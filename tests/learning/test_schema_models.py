"""Models record the feature schema they were trained under, and serve only while it holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete

from core.settings import load_settings
from scoring.features import build_training_frame
from scoring.registry import ModelRegistry
from scoring.schema import FeatureSchema, MappedField
from scoring.training_set import serves_live_pipeline, train_options
from scoring.training import run_experiment
from services import Conflict, NotFound, OperationError
from services.fields import announce_schema, make_field, map_field, save_fields, unmap_field
from storage.db import Database
from storage.feature_schema import active_schema, save_schema
from storage.model_registry import NotServable, champion, promote_in_session, record_model
from storage.models import FeatureSchemaVersion, FieldMapping
from tasks.resources import Resources
from tests.scoring.events import T0, behaviour_world

BUDGET = MappedField("hubspot", "contacts", "budget", "numeric", "budget")
PLAN = MappedField("hubspot", "contacts", "plan_interest", "categorical", "plan_interest", fit=True, top_n=2)


@pytest.fixture()
def schema_clean(clean: Database, redis_client: Any) -> Iterator[Database]:
    """No saved feature schema (nor field mapping) before and after."""
    def wipe() -> None:
        with clean.session(write=True) as session:
            session.execute(delete(FeatureSchemaVersion))
            session.execute(delete(FieldMapping))
        redis_client.delete("lb:schema:version")
    wipe()
    yield clean
    wipe()


def mapped_frame(seed: int = 1) -> pd.DataFrame:
    """Decision rows from the behaviour world, plus a budget and a plan interest that carry signal."""
    events, outcomes = behaviour_world(leads=300, seed=seed)
    frame = build_training_frame(events, outcomes)
    rng = np.random.default_rng(seed)
    won = frame["won"].to_numpy()
    frame["budget"] = np.where(won == 1, rng.normal(6000, 2000, len(frame)), rng.normal(3000, 2000, len(frame)))
    frame["plan_interest"] = [str(rng.choice(["enterprise", "team", "free", "other1", "other2"])) for _ in won]
    return frame


def train(schema: FeatureSchema, directory: Path, seed: int = 0) -> dict[str, Any]:
    """A bundle trained under `schema` (its frame holds only the mapped columns `schema` maps), registered."""
    frame = mapped_frame()
    frame = frame.drop(columns=[c for c in ("budget", "plan_interest") if schema.field_of_feature(c) is None])
    experiment = run_experiment(frame, train_options(schema), seed=seed, now=T0 + timedelta(days=90, seconds=seed))
    return ModelRegistry(directory).register(experiment.bundle)


def test_a_model_records_its_schema_and_is_refused_under_another(schema_clean: Database, tmp_path: Path) -> None:
    with schema_clean.session(write=True) as session:
        schema = save_schema(session, [BUDGET, PLAN], actor="ana@acme.io")
    registered = train(schema, tmp_path / "models")
    bundle = ModelRegistry(tmp_path / "models").load(registered["version"])
    recorded = bundle.metadata["feature_schema"]
    assert recorded["version"] == 1 and recorded["fingerprint"] == schema.fingerprint
    assert [f["feature"] for f in recorded["fields"]] == ["budget", "plan_interest"]
    pre = bundle.main.pre
    assert {"budget", "plan_interest"} <= set(pre.input_columns)
    assert next(s for s in pre.columns if s.name == "plan_interest").levels.__len__() == 2  # top_n levels kept
    assert "plan_interest" in bundle.fit.pre.input_columns  # a fit field trains the grade model too
    assert serves_live_pipeline(pre.input_columns, schema) and not serves_live_pipeline(pre.input_columns)

    other = train(FeatureSchema(9, (BUDGET,)), tmp_path / "models", seed=1)
    with schema_clean.session(write=True) as session:
        record_model(session, registered, kind="lead")
        record_model(session, other, kind="lead")
        # The plan interest becomes text (its length): a different feature than `registered` learned.
        save_schema(session, [BUDGET, MappedField("hubspot", "contacts", "plan_interest", "text", "plan_interest")],
                    actor="ben@acme.io")
    # A model trained under another version whose fields are still mapped alike may serve.
    with schema_clean.session(write=True) as session:
        promote_in_session(session, other["version"], "ana@acme.io")
    with pytest.raises(NotServable, match="plan_interest.*categorical.*now text"):
        with schema_clean.session(write=True) as session:
            promote_in_session(session, registered["version"], "ana@acme.io")
    with schema_clean.session(write=True) as session:
        save_schema(session, [PLAN], actor="ben@acme.io")
    with pytest.raises(NotServable, match="feature 'budget'.*is not mapped"):
        with schema_clean.session(write=True) as session:
            promote_in_session(session, registered["version"], "ana@acme.io")
    with schema_clean.session() as session:
        assert champion(session).version == other["version"]  # unchanged by the refusals


def test_admin_changes_are_checked_and_protect_the_serving_model(schema_clean: Database, tmp_path: Path) -> None:
    actor = "ana@acme.io"
    with schema_clean.session(write=True) as session:
        session.add(FieldMapping(crm="salesforce", object_type="Lead", output="score", field_name="Fit_Score__c"))
    cases = [
        (lambda: make_field("pipedrive", "persons", "budget", "numeric"), "crm must be one of"),
        (lambda: make_field("hubspot", "companies", "budget", "numeric"), "can be mapped on contacts"),
        (lambda: make_field("hubspot", "contacts", "budget", "money"), "unknown kind 'money'"),
        (lambda: make_field("hubspot", "contacts", "Budget Total", "numeric"), "not a HubSpot property name"),
        (lambda: make_field("hubspot", "contacts", "leadbridge_grade", "categorical"), "writes its grade"),
        (lambda: make_field("hubspot", "contacts", "hubspot_owner_id", "categorical"), "owner routing"),
        (lambda: make_field("salesforce", "lead", "Status", "categorical"), "lead status"),
        (lambda: make_field("salesforce", "Lead", "fit_score__c", "numeric"), "writes its score"),
        (lambda: make_field("hubspot", "contacts", "industry", "categorical"), "built-in feature"),
        (lambda: make_field("hubspot", "contacts", "x", "categorical", top_n=0), "top_n"),
    ]
    for build, message in cases:
        with pytest.raises(OperationError, match=message):
            with schema_clean.session(write=True) as session:
                map_field(session, actor, build())
    with schema_clean.session(write=True) as session:
        assert active_schema(session).version == 0  # nothing was saved
        schema = map_field(session, actor, make_field("salesforce", "lead", "Budget__c", "numeric",
                                                      feature="budget"))
        assert schema.fields == (MappedField("salesforce", "Lead", "Budget__c", "numeric", "budget"),)
        with pytest.raises(NotFound, match="is not mapped"):
            unmap_field(session, actor, "hubspot", "contacts", "budget")
    with schema_clean.session(write=True) as session:
        schema = save_fields(session, actor, [BUDGET, PLAN])
    registered = train(schema, tmp_path / "models")
    with schema_clean.session(write=True) as session:
        promote_in_session(session, record_model(session, registered, kind="lead").version, actor)
    with pytest.raises(Conflict, match=f"serving lead model {registered['version']}.*budget"):
        with schema_clean.session(write=True) as session:
            unmap_field(session, actor, "hubspot", "contacts", "budget")
    with schema_clean.session(write=True) as session:
        assert active_schema(session).fields == (BUDGET, PLAN)
        # Mapping another field changes nothing the model reads: allowed.
        map_field(session, actor, make_field("hubspot", "contacts", "has_trial", "boolean"))


def test_a_worker_stops_serving_a_model_whose_field_was_unmapped(schema_clean: Database, redis_client: Any,
                                                                settings_overrides: dict[str, Any],
                                                                service_urls: Any, tmp_path: Path) -> None:
    actor = "ana@acme.io"
    with schema_clean.session(write=True) as session:
        schema = save_fields(session, actor, [BUDGET, PLAN])
    announce_schema(redis_client, schema)
    registered = train(schema, tmp_path / "models")
    with schema_clean.session(write=True) as session:
        promote_in_session(session, record_model(session, registered, kind="lead").version, actor)
    redis_client.set("lb:model:champion", registered["version"])
    settings = load_settings({**settings_overrides, "min_outcomes": 10, "min_positives": 5}, env_file=None)
    res = Resources(settings, service_urls, schema_clean, redis_client)
    assert res.scorer().model is not None and res.scorer().model.version == registered["version"]
    assert res.features.schema == schema and "budget" in res.features.get_online(["x"])[0]
    with schema_clean.session(write=True) as session:
        forced = unmap_field(session, actor, "hubspot", "contacts", "budget", force=True)
    announce_schema(redis_client, forced)
    assert res.schema().version == forced.version
    assert res.scorer().model is None  # the rules serve; the store no longer holds budget
    assert "budget" not in res.features.get_online(["x"])[0]
