"""Backfill from the sandbox CRM, filled by the traffic simulator, over real HTTP with the real vendor SDKs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
from sqlalchemy import delete, func, select

from connectors.hubspot.client import HubSpotConnector
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from sandbox import DEFAULT_HUBSPOT_TOKEN, DEFAULT_SF_SESSION, SandboxCRM
from sandbox.simulator import FunnelSimulation, SandboxCrmFeed, SimulatorConfig, run, simulate
from scoring.features import employees_bucket, to_ms
from storage.db import Database
from storage.models import (
    Account,
    AuditEntry,
    InboxEvent,
    Lead,
    LeadCrmId,
    OutboxItem,
    Outcome,
    ScoreHistory,
    Source,
)
from tasks.backfill import backfill
from tasks.resources import Resources
from tests.connectors.conftest import salesforce_for
from tests.crm_ids import crm_id, has_id
from tests.processes import REPO


@pytest.fixture()
def res(db: Database, redis_url: str, settings_overrides: dict[str, Any], service_urls: ServiceUrls) -> Resources:
    client = make_redis_client(redis_url)
    with db.session() as session:
        for model in (Outcome, ScoreHistory, OutboxItem, InboxEvent, Lead, Account, Source, AuditEntry):
            session.execute(delete(model))
    keys = list(client.scan_iter("lb:*"))
    if keys:
        client.delete(*keys)
    return Resources(load_settings(settings_overrides, env_file=None), service_urls, db, client)


@pytest.fixture()
def filled() -> Iterator[tuple[SandboxCRM, FunnelSimulation]]:
    """A sandbox CRM holding a simulated funnel: HubSpot and Salesforce records, closed deals, converted leads."""
    crm = SandboxCRM()
    crm.start(port=0)
    sim = simulate(SimulatorConfig(seed=3, accounts=20, days=60))
    run(sim, crm=SandboxCrmFeed(crm.base_url, crms=("hubspot", "salesforce")))
    yield crm, sim
    crm.stop()


def count(db: Database, model: Any, *where: Any) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_hubspot_backfill_imports_history_once_and_scores_every_lead(filled: tuple[SandboxCRM, FunnelSimulation],
                                                                     res: Resources, db: Database) -> None:
    crm, sim = filled
    hubspot = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=crm.base_url)
    report = backfill(res, "hubspot", hubspot)

    assert report.fetched == {"company": len(sim.accounts), "contact": len(sim.contacts), "deal": len(sim.outcomes)}
    assert report.api_calls <= 8  # pages of 100 records, not a call per record
    with db.session() as session:
        leads = session.scalars(select(Lead)).all()
        assert len(leads) == len(sim.contacts)
        assert {lead.email for lead in leads} == {c.email.lower() for c in sim.contacts}
        assert all(lead.score is not None and lead.account_id for lead in leads)
        assert session.scalar(select(func.count()).select_from(LeadCrmId).where(LeadCrmId.crm == "hubspot")) == len(leads)
        assert session.scalar(select(func.count()).select_from(ScoreHistory).where(
            ScoreHistory.trigger == "backfill")) == len(leads)
        # Outcomes agree with the connector's own (search-based) reading of the same CRM: one label per person,
        # won when any of their outcomes is (a won deal also makes the contact a customer).
        labels: dict[str, bool] = {}
        for lead_hubspot, won in session.execute(
                select(LeadCrmId.object_id, Outcome.won).join(Outcome, Outcome.lead_id == LeadCrmId.lead_id)
                .where(LeadCrmId.crm == "hubspot")):
            labels[lead_hubspot] = labels.get(lead_hubspot, False) or won
        assert labels == {o.lead_id: o.won for o in hubspot.read_outcomes()}
        assert len(labels) == len(sim.outcomes)
        # Nothing a record became later (a customer, a won deal) is backdated to its creation.
        for lead_hubspot, occurred in session.execute(
                select(LeadCrmId.object_id, Outcome.occurred_at).join(Outcome, Outcome.lead_id == LeadCrmId.lead_id)
                .where(LeadCrmId.crm == "hubspot", Outcome.source == "hubspot.lifecyclestage")):
            created = crm.store.hs_get("contacts", lead_hubspot)["properties"]["createdate"]
            assert occurred > datetime.fromisoformat(created)
        outcome_rows = session.scalar(select(func.count()).select_from(Outcome))
        by_email = {lead.email: lead for lead in leads}
        hubspot_ids = {lead.id: crm_id(session, lead.id, "hubspot") for lead in leads}
    assert count(db, InboxEvent, InboxEvent.status != "done") == 0
    # Features: each person carries their company's firmographics, as live enrichment would give them.
    contact = next(c for c in sim.contacts if not c.email.endswith(("gmail.com", "yahoo.com", "outlook.com",
                                                                    "hotmail.com", "proton.me")))
    account = sim.account_by_key[contact.account_key]
    lead = by_email[contact.email.lower()]
    vector = res.features.get_online([str(lead.id)])[0]
    assert vector["industry"] == account.industry.lower()
    assert vector["employees_bucket"] == employees_bucket(account.employees)
    assert vector["email_domain_type"] == "corporate"
    # Every changed score waits for the writeback stage.
    assert res.redis.scard("lb:dirty:hubspot") == len(sim.contacts)

    # A second run imports nothing and changes nothing.
    rows_before = count(db, InboxEvent)
    again = backfill(res, "hubspot", hubspot)
    assert (again.events_new, again.outcomes_new, again.scores_changed) == (0, 0, 0)
    assert count(db, InboxEvent) == rows_before and count(db, Outcome) == outcome_rows

    # A record changed in the CRM since comes in once more: as a change, at the time it changed.
    hubspot_id = hubspot_ids[lead.id]
    requests.patch(f"{crm.base_url}/_sandbox/hubspot/contacts/{hubspot_id}", timeout=5,
                   json={"properties": {"jobtitle": "Chief Revenue Officer"}}).raise_for_status()
    changed_at = crm.store.hs_get("contacts", hubspot_id)["properties"]["lastmodifieddate"]
    third = backfill(res, "hubspot", hubspot)
    assert third.events_new == 1
    with db.session() as session:
        row = session.scalars(select(InboxEvent).order_by(InboxEvent.id.desc())).first()
        assert (row.event_type, row.object_id, row.status) == ("property_change", hubspot_id, "done")
        assert row.occurred_at == datetime.fromisoformat(changed_at)
        assert session.get(Lead, lead.id).title == "Chief Revenue Officer"
    assert res.features.get_online([str(lead.id)])[0]["seniority"] == "c-level"
    # The trait carries the change's own time (point in time), not the time of the import.
    stamp = res.redis.hget(f"lb:fs:t:{lead.id}", "@title").decode()
    assert int(stamp.split("|")[0]) == to_ms(row.occurred_at)
    last = backfill(res, "hubspot", hubspot)
    assert (last.events_new, last.outcomes_new) == (0, 0)


def test_salesforce_backfill_over_soql(filled: tuple[SandboxCRM, FunnelSimulation], res: Resources,
                                      db: Database) -> None:
    crm, sim = filled
    salesforce = salesforce_for(crm)
    report = backfill(res, "salesforce", salesforce)
    # A win converted its Lead (Account + Contact + Opportunity); a loss closed the Lead unconverted.
    converted = sum(o.won for o in sim.outcomes)
    assert 0 < converted < len(sim.outcomes)
    assert report.fetched == {"lead": len(sim.contacts), "contact": converted, "account": converted,
                              "opportunity": converted}
    with db.session() as session:
        sf_leads = session.scalars(select(Lead).where(Lead.id.in_(select(LeadCrmId.lead_id).where(
            LeadCrmId.crm == "salesforce", LeadCrmId.object_id.like("00Q%"))))).all()
        assert len(sf_leads) == len(sim.contacts)
        # The connector's outcomes are all stored (ingest may add rows of its own from the records' state).
        stored = {(sid, won, source) for sid, won, source in session.execute(
            select(LeadCrmId.object_id, Outcome.won, Outcome.source).join(Outcome, Outcome.lead_id == LeadCrmId.lead_id)
            .where(LeadCrmId.crm == "salesforce"))}
        read = salesforce.read_outcomes()
        assert {(o.lead_id, o.won, o.source) for o in read} <= stored
        # Every conversion is won; the Opportunity it opened is an outcome of its own. A Lead closed unconverted
        # reports nothing: it becomes a negative once its maturity window passes.
        conversions = [o for o in read if o.source == "salesforce.lead"]
        deals = [o for o in read if o.source == "salesforce.opportunity"]
        assert len(conversions) == len(deals) == converted and all(o.won for o in conversions)
        # A converted Lead and its Contact are one lead.
        contact = session.scalars(select(Lead).where(Lead.id.in_(select(LeadCrmId.lead_id).where(
            LeadCrmId.crm == "salesforce", LeadCrmId.object_id.like("003%"))))).first()
        assert contact is not None and contact.score is not None
        assert session.scalar(select(func.count()).select_from(Lead).where(Lead.id.in_(select(LeadCrmId.lead_id)
                              .where(LeadCrmId.crm == "salesforce")))) == len(sim.contacts)
    # A converted Contact gets its Account's firmographics as traits.
    vector = res.features.get_online([str(contact.id)])[0]
    assert vector["industry"] and vector["employees_bucket"]
    again = backfill(res, "salesforce", salesforce)
    assert (again.events_new, again.outcomes_new, again.scores_changed) == (0, 0, 0)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=180, check=False)


def test_cli_backfill_both_crms(filled: tuple[SandboxCRM, FunnelSimulation], res: Resources, db: Database,
                                service_env: dict[str, str]) -> None:
    crm, sim = filled
    env = {**service_env, "HUBSPOT_ACCESS_TOKEN": DEFAULT_HUBSPOT_TOKEN, "HUBSPOT_BASE_URL": crm.base_url,
           "COLUMNS": "120"}
    done = run_cli(env, "backfill", "hubspot")
    assert done.returncode == 0, done.stderr
    assert "fetch contacts" in done.stderr and "score leads" in done.stderr  # the progress bars
    assert re.search(rf"leads scored / changed\s*│\s*{len(sim.contacts)} / {len(sim.contacts)}\s", done.stdout)
    assert count(db, Lead, Lead.score.is_not(None)) == len(sim.contacts)

    done = run_cli({**service_env, "SALESFORCE_SESSION_ID": DEFAULT_SF_SESSION}, "backfill", "salesforce",
                   "--sandbox-url", crm.base_url, "--no-writeback")
    assert done.returncode == 0, done.stderr
    assert re.search(r"queued CRM writes\s*│\s*0\s", done.stdout)
    assert count(db, Lead, has_id("salesforce")) == len(sim.contacts)  # a converted Lead's Contact: the same lead


def test_cli_backfill_explains_missing_or_wrong_credentials(filled: tuple[SandboxCRM, FunnelSimulation],
                                                            res: Resources, service_env: dict[str, str]) -> None:
    crm, _ = filled
    done = run_cli(service_env, "backfill", "hubspot")
    assert done.returncode == 2 and "HUBSPOT_ACCESS_TOKEN" in done.stderr and "Traceback" not in done.stderr
    done = run_cli(service_env, "backfill", "salesforce")
    assert done.returncode == 2 and "SALESFORCE_SESSION_ID" in done.stderr and "Traceback" not in done.stderr
    started = time.monotonic()
    done = run_cli({**service_env, "HUBSPOT_ACCESS_TOKEN": "pat-wrong", "HUBSPOT_BASE_URL": crm.base_url},
                   "backfill", "hubspot")
    assert done.returncode == 1 and "401" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 60  # an auth error is not retried
    done = run_cli(service_env, "backfill", "pipedrive")
    assert done.returncode == 2 and "pipedrive" in done.stderr
