"""The learning loop on stored data: retrain -> challenger vs champion -> promotion; drift; account scores."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select

from connectors.hubspot.client import HubSpotConnector
from core.keys import CHAMPION_KEY
from core.runtime import ServiceUrls
from core.settings import load_settings
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from scoring.features import ACTIVITY_TYPES, RedisFeatureStore
from storage.db import Database
from storage.models import Account, AuditEntry, Lead, ModelVersion
from storage.outcomes import load_events
from tasks.learning import LearningConfig, check_drift_now, retrain_from_events, score_accounts_now
from tasks.resources import Resources
from tests.connectors.conftest import salesforce_for
from tests.crm_ids import with_ids
from tests.learning.conftest import DAY, T0, store_world, web_event, world_events


def config(tmp_path: Path, **overrides: Any) -> LearningConfig:
    values: dict[str, Any] = {"maturity_days": 30, "min_outcomes": 50, "min_positives": 10, "models_dir": tmp_path}
    values.update(overrides)
    return LearningConfig(**values)


def test_retrain_promotes_a_winner_and_keeps_a_loser(clean: Database, redis_client: Any, tmp_path: Path) -> None:
    events, outcomes = world_events(leads=400)
    store_world(clean, events, outcomes)
    now = T0 + 150 * DAY
    first = retrain_from_events(clean, redis_client, config(tmp_path), now=now)
    assert first.status == "promoted", first.reason
    assert "rules" in first.decision["champion_name"]
    assert first.metrics["roc_auc"] > 0.7
    assert set(first.baselines) == {"logistic_regression", "rules"}
    assert redis_client.get(CHAMPION_KEY).decode() == first.version
    # The same data again with an impossible margin: the challenger is kept, the champion stays.
    second = retrain_from_events(clean, redis_client, config(tmp_path, promotion_margin=0.5), now=now + DAY)
    assert second.status == "kept" and "kept for inspection" in second.reason
    assert second.decision["champion_name"] == f"champion {first.version}"
    with clean.session() as session:
        rows = {r.version: r for r in session.scalars(select(ModelVersion))}
    assert rows[first.version].status == "champion" and rows[second.version].status == "challenger"
    row = rows[first.version]
    assert row.kind == "lead" and row.labelled_outcomes == first.labelled
    assert row.features and row.feature_hash and row.params and row.window_start and row.window_end
    assert row.metrics["baselines"]["rules"]["roc_auc"] and row.metrics["feature_importance"]
    assert Path(row.path, "metadata.json").is_file()
    assert redis_client.get(CHAMPION_KEY).decode() == first.version


def test_too_few_outcomes_never_replace_the_rules(clean: Database, redis_client: Any, tmp_path: Path) -> None:
    events, outcomes = world_events(leads=200)
    store_world(clean, events, outcomes)
    result = retrain_from_events(clean, redis_client, config(tmp_path, min_outcomes=5000), now=T0 + 150 * DAY)
    assert result.status == "kept" and "needs to replace the rules" in result.reason
    assert redis_client.get(CHAMPION_KEY) is None
    young = retrain_from_events(clean, redis_client, config(tmp_path, maturity_days=365), now=T0 + 10 * DAY)
    assert young.status == "skipped" and "not enough labels" in young.reason


def test_drift_report_and_alert(clean: Database, redis_client: Any, tmp_path: Path) -> None:
    events, outcomes = world_events(leads=600)
    leads = store_world(clean, events, outcomes)
    trained_at = T0 + 75 * DAY
    result = retrain_from_events(clean, redis_client, config(tmp_path), now=trained_at)
    assert result.status == "promoted", result.reason
    store = RedisFeatureStore(redis_client, prefix="lb:fs:test-drift")
    for key in redis_client.scan_iter("lb:fs:test-drift:*"):
        redis_client.delete(key)
    with clean.session() as session:
        stored = load_events(session, ACTIVITY_TYPES)
    store.apply_many(stored.events, [stored.lead_of(e) for e in stored.events])
    live_at = trained_at + DAY
    # Every lead suddenly hammers the pricing page: the live week no longer looks like training.
    burst = [web_event(user, "page_view", live_at - timedelta(hours=h), f"{user}:burst{h}",
                       {"url": "https://acme.io/pricing"}) for user in leads for h in range(1, 9)]
    store.apply_many(burst, [str(leads[e.object_id]) for e in burst])
    with clean.session(write=True) as session:
        for lead in session.scalars(select(Lead)):
            lead.score_event_at = live_at - timedelta(hours=1)
    report = check_drift_now(clean, redis_client, store, config(tmp_path), now=live_at)
    assert report is not None and report.live_rows == len(leads)
    assert report.alert and "pricing_views_1d" in report.drifted and "pricing_views_7d" in report.drifted
    assert report.features["industry"] < 0.2  # traits did not move
    with clean.session() as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == result.version)).one()
        assert row.metrics["drift"]["pricing_views_1d"] > 0.2 and row.metrics["drift_report"]["alert"] is True
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "model.drift_alert")).first()
    # Too few live leads: a report with a note, never an alert.
    with clean.session(write=True) as session:
        for lead in list(session.scalars(select(Lead)))[20:]:
            lead.score_event_at = T0
    quiet = check_drift_now(clean, redis_client, store, config(tmp_path), now=live_at)
    assert quiet is not None and not quiet.alert and quiet.live_rows == 20


def test_account_scores_reach_hubspot_companies_and_salesforce_accounts(
        clean: Database, redis_client: Any, settings_overrides: dict[str, Any],
        service_urls: ServiceUrls) -> None:
    crm = SandboxCRM()
    crm.start(port=0)
    try:
        HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=crm.base_url).provision_fields()
        company = crm.store.hs_create("companies", {"name": "Initech", "domain": "initech.com"})["id"]
        salesforce = salesforce_for(crm)
        salesforce.provision_fields(create=True)
        sf_account = crm.store.sf_create("Account", {"Name": "Initech"})
        with clean.session(write=True) as session:
            account = Account(domain="initech.com", name="Initech", properties={})
            session.add_all(with_ids(account, hubspot=company, salesforce=sf_account))
            session.flush()
            session.add_all([
                Lead(external_id="a1", account_id=account.id, score=70, probability=0.7, grade="A",
                     reasons=["+ requested a demo"], scored_at=T0, properties={}),
                Lead(external_id="a2", account_id=account.id, score=20, probability=0.2, grade="C", reasons=[],
                     scored_at=T0, properties={}),
            ])
        for key in redis_client.scan_iter("lb:accounts:*"):
            redis_client.delete(key)
        settings = load_settings({**settings_overrides, "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN,
                                  "hubspot_base_url": crm.base_url}, env_file=None)
        res = Resources(settings, service_urls, clean, redis_client)
        res._connectors["salesforce"] = salesforce  # the sandbox needs its routing session
        store = RedisFeatureStore(redis_client, prefix="lb:fs:test-accounts")
        store.apply(web_event("x", "page_view", T0 + 9 * DAY, "acc:pv", {"url": "/pricing"}), lead_id="_")
        with clean.session() as session:
            first_lead = session.scalars(select(Lead).where(Lead.external_id == "a1")).one().id
        store.apply(web_event("a1", "page_view", T0 + 9 * DAY, "acc:pv1", {"url": "/pricing"}), lead_id=str(first_lead))
        counts = score_accounts_now(res, store=store, now=T0 + 10 * DAY, model_version="m1")
        assert counts == {"scored": 1, "changed": 1, "hubspot": 1, "salesforce": 1}
        props = crm.store.hs_get("companies", company)["properties"]
        expected = round(100 * (1 - 0.3 * 0.8) * 0.8)  # one engaged contact keeps 80%
        assert int(props["leadbridge_score"]) == expected
        assert props["leadbridge_grade"] == "A"
        assert "1 contact active in the last 7 days" in props["leadbridge_reasons"]
        assert props["leadbridge_model_version"] == "account:m1"
        sf = crm.store.sf_get("Account", sf_account)
        assert sf["Leadbridge_Score__c"] == expected and sf["Leadbridge_Grade__c"] == "A"
        # Nothing changed since: nothing is written again.
        again = score_accounts_now(res, store=store, crms=("hubspot",), now=T0 + 10 * DAY, model_version="m1")
        assert again["scored"] == 0 and again["hubspot"] == 0
        writes = requests.get(crm.base_url + "/_sandbox/writes", params={"prefix": "leadbridge_score"}, timeout=5)
        assert writes.ok
    finally:
        crm.stop()
