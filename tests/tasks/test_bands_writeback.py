"""The tier field shows the configured bands: a real worker writes quantile bands (and then custom fixed ones) to
the sandbox's HubSpot contacts; the same writeback code writes the seed's fixed 95 / 50 bands to Salesforce Leads
through simple-salesforce."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from core.keys import DIRTY_KEY
from core.records import utcnow
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from sandbox import SandboxCRM
from services.bands import publish_bands, save_bands
from storage.db import Database
from storage.models import BandSet, Lead
from tasks.celery_app import create_celery
from tasks.names import WRITEBACK_TASK
from tasks.resources import Resources
from tasks.writeback import flush_once
from tests.connectors.conftest import salesforce_for
from tests.crm_ids import with_ids
from tests.processes import wait_for
from tests.services import broker_urls, wipe_pipeline
from tests.tasks.conftest import LivePipeline


@pytest.fixture(autouse=True)
def no_band_sets(db: Database) -> Iterator[None]:
    """Each test starts and ends with the default bands (no saved band set)."""
    with db.session() as session:
        session.execute(delete(BandSet))
    yield
    with db.session() as session:
        session.execute(delete(BandSet))


def scored_leads(db: Database, scores: dict[str, int], crm: str) -> dict[str, int]:
    """Leads scored now with these scores, each holding the given CRM record; CRM id -> lead id."""
    now = utcnow()
    out = {}
    with db.session() as session:
        for record_id, score in scores.items():
            lead = Lead(email=f"{record_id.lower()}@bands.example", score=score, probability=score / 100, grade="B",
                        reasons=["+ visited pricing"], model_version="rules:v1", scored_at=now - timedelta(minutes=1))
            session.add_all(with_ids(lead, **{crm: record_id}))
            session.flush()
            out[record_id] = lead.id
    return out


def test_a_real_worker_writes_the_configured_bands_to_hubspot(live_pipeline: LivePipeline, db: Database,
                                                              redis_url: str, settings_overrides: dict[str, Any]
                                                              ) -> None:
    p = live_pipeline
    contacts = [p.sandbox.store.hs_create("contacts", {"email": f"b{i}@bands.example"})["id"] for i in range(20)]
    # Scores 5, 10, ..., 100: the default quantile bands put the top 10% (95 and 100) hot and the next 30% (65-90)
    # warm; the legacy 75/40 would have made 75-100 hot.
    leads = scored_leads(db, {cid: 5 * (i + 1) for i, cid in enumerate(contacts)}, "hubspot")
    assert publish_bands(db, p.redis)
    broker, _ = broker_urls(redis_url, 8)
    celery = create_celery(load_settings({**settings_overrides, "broker_url": broker}, env_file=None))

    def tiers() -> dict[int, str | None]:
        return {5 * (i + 1): p.sandbox.store.hs_get("contacts", cid)["properties"].get("leadbridge_tier")
                for i, cid in enumerate(contacts)}

    def write_all() -> None:
        p.redis.sadd(DIRTY_KEY.format(crm="hubspot"), *leads.values())
        celery.send_task(WRITEBACK_TASK, args=["hubspot"], ignore_result=True)

    write_all()
    expected = {s: "hot" if s >= 95 else "warm" if s >= 65 else "cold" for s in range(5, 101, 5)}
    wait_for(lambda: tiers() == expected, 60, "the quantile tiers in HubSpot")

    # Custom names and fixed cut-offs, saved as the admin would: the next write shows them.
    with db.session(write=True) as session:
        save_bands(session, "admin@example.com", {"mode": "fixed", "bands": [
            {"name": "A list", "value": 80}, {"name": "nurture", "value": 30}, {"name": "rest", "value": 0}]})
    assert publish_bands(db, p.redis)
    write_all()
    expected = {s: "A list" if s >= 80 else "nurture" if s >= 30 else "rest" for s in range(5, 101, 5)}
    wait_for(lambda: tiers() == expected, 60, "the custom tiers in HubSpot")


def test_salesforce_leads_show_the_seed_fixed_bands(sandbox: SandboxCRM, db: Database, redis_url: str,
                                                   settings_overrides: dict[str, Any],
                                                   service_urls: ServiceUrls) -> None:
    redis = make_redis_client(redis_url)
    wipe_pipeline(db, redis)
    res = Resources(load_settings(settings_overrides, env_file=None), service_urls, db, redis)
    connector = salesforce_for(sandbox)
    connector.provision_fields(create=True)
    res._connectors["salesforce"] = connector
    records = {score: sandbox.store.sf_create("Lead", {"LastName": f"Band{score}", "Company": "Acme"})
               for score in (96, 95, 94, 50, 49)}
    leads = scored_leads(db, {rid: score for score, rid in records.items()}, "salesforce")
    with db.session(write=True) as session:
        save_bands(session, "admin@example.com", "fixed-95-50")
    assert publish_bands(db, redis)
    redis.sadd(DIRTY_KEY.format(crm="salesforce"), *leads.values())
    assert flush_once(res, "salesforce") == len(records)
    shown = {score: sandbox.store.sf_get("Lead", rid)["Leadbridge_Tier__c"] for score, rid in records.items()}
    assert shown == {96: "hot", 95: "hot", 94: "warm", 50: "warm", 49: "cold"}


def test_cutoffs_are_refreshed_by_beat_and_computed_once_on_a_miss(db: Database, redis_url: str,
                                                                  settings_overrides: dict[str, Any]) -> None:
    from core.keys import BANDS_KEY
    from tasks.bands import cutoffs_in_force
    from tasks.celery_app import beat_schedule

    assert beat_schedule()["refresh-bands"] == {"task": "tasks.bands.refresh_bands", "schedule": 300.0}
    celery = create_celery(load_settings(settings_overrides, env_file=None))
    assert celery.amqp.router.route({}, "tasks.bands.refresh_bands")["queue"].name == "learning"
    redis = make_redis_client(redis_url)
    wipe_pipeline(db, redis)
    scored_leads(db, {f"x{i}": 5 * i for i in range(1, 21)}, "hubspot")
    # A miss without a session: the legacy cut-offs, nothing cached; with one: resolved once and cached.
    assert cutoffs_in_force(redis) == (("hot", 75), ("warm", 40), ("cold", 0)) and not redis.exists(BANDS_KEY)
    with db.session() as session:
        assert cutoffs_in_force(redis, session) == (("hot", 95), ("warm", 65), ("cold", 0))
    assert redis.exists(BANDS_KEY)
    with db.session() as session:
        session.execute(delete(Lead))  # the cache answers until the next refresh
        assert cutoffs_in_force(redis, session) == (("hot", 95), ("warm", 65), ("cold", 0))
