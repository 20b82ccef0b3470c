"""The pilot's KPIs from CRM facts, end to end (issue 17): pilot leads in the database, their owners' work in the
sandbox CRM (HubSpot contacts and Salesforce Leads, one converted to a Contact), read by tasks.value through the
real SDKs into pilot_facts, and the Value report computed from them equal to the values worked out by hand.

Real database, real Redis, the sandbox CRM over HTTP; nothing mocked.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sandbox import DEFAULT_HUBSPOT_APP_USER_ID, SandboxCRM
from sandbox.reps import write_rep_activity
from scoring.experiment import CONTROL, PILOT
from scoring.value import LeadFacts
from services.pilots import PilotInput, start_pilot
from services.value import current_value, export
from storage.db import Database
from storage.models import Lead, LeadCrmId, PilotFacts, ScoreHistory
from storage.pilots import insert_groups, open_pilot
from tasks.resources import Resources
from tasks.value import collect_facts_now
from tests.connectors.conftest import salesforce_for

MIN = timedelta(minutes=1)
DAY = timedelta(days=1)


@pytest.fixture()
def crms(res: Resources, sandbox: SandboxCRM) -> Resources:
    """The test's worker resources with HubSpot's integration user known and Salesforce on the sandbox too."""
    hubspot = res.connector("hubspot")
    assert hubspot is not None
    hubspot.integration_user_id = str(DEFAULT_HUBSPOT_APP_USER_ID)
    res._connectors["salesforce"] = salesforce_for(sandbox)
    return res


def _facts(t0: datetime) -> list[LeadFacts]:
    """Three pilot and three control leads per CRM: what their owners did, by hand."""
    return [
        # pilot: alerted, called within minutes; one won, one lost, one still open (SQL, no opportunity)
        LeadFacts("p-won", PILOT, t0, cluster="rep1", crossed_at=t0 + 10 * MIN, first_touch_at=t0 + 14 * MIN,
                  sql_at=t0 + DAY, opportunity_at=t0 + DAY, amount=10000.0, closed_at=t0 + 20 * DAY, won=True),
        LeadFacts("p-lost", PILOT, t0, cluster="rep1", crossed_at=t0 + 20 * MIN, first_touch_at=t0 + 26 * MIN,
                  sql_at=t0 + 2 * DAY, opportunity_at=t0 + 2 * DAY, amount=4000.0, closed_at=t0 + 9 * DAY,
                  won=False),
        LeadFacts("p-open", PILOT, t0, cluster="rep2", crossed_at=t0 + 30 * MIN, first_touch_at=t0 + 32 * MIN,
                  sql_at=t0 + 3 * DAY),
        # control: no alert; reached from the queue hours later; one lost, two open (one never touched)
        LeadFacts("c-lost", CONTROL, t0, cluster="rep2", crossed_at=t0 + 10 * MIN, first_touch_at=t0 + 370 * MIN,
                  sql_at=t0 + 2 * DAY, opportunity_at=t0 + 2 * DAY, amount=6000.0, closed_at=t0 + 12 * DAY,
                  won=False),
        LeadFacts("c-slow", CONTROL, t0, cluster="rep2", crossed_at=t0 + 20 * MIN, first_touch_at=t0 + 500 * MIN),
        LeadFacts("c-never", CONTROL, t0, cluster="rep1", crossed_at=t0 + 30 * MIN),
    ]


def _seed(db: Database, sandbox: SandboxCRM, crm: str, t0: datetime, now: datetime) -> dict[str, int]:
    """The pilot's leads in the database (groups, a score crossing 75 at crossed_at) and their work in the CRM."""
    facts = _facts(t0)
    records: dict[str, tuple[str, str]] = {}
    for f in facts:
        if crm == "hubspot":
            records[f.lead_id] = ("hubspot", sandbox.store.hs_create(
                "contacts", {"email": f"{f.lead_id}@acme.io"}, created_at=t0.timestamp())["id"])
        else:
            records[f.lead_id] = ("salesforce", sandbox.store.sf_create(
                "Lead", {"LastName": f.lead_id, "Company": "Acme"}, created_at=t0.timestamp()))
    write_rep_activity(sandbox.store, facts, records, now)
    lead_ids: dict[str, int] = {}
    with db.session() as session:
        pilot = open_pilot(session)
        assert pilot is not None
        for f in facts:
            lead = Lead(email=f"{f.lead_id}@{crm}.example", created_at=t0, properties={})
            session.add(lead)
            session.flush()
            lead_ids[f.lead_id] = lead.id
            kind = "contact" if crm == "hubspot" else "lead"
            session.add(LeadCrmId(lead_id=lead.id, crm=crm, object_type=kind, object_id=records[f.lead_id][1]))
            # Below the threshold first, then the crossing: the KPIs start the clock at the first score >= 75.
            for score, at in ((40, t0 + MIN), (80, f.crossed_at), (90, f.crossed_at + 5 * MIN)):
                session.add(ScoreHistory(lead_id=lead.id, score=score, probability=score / 100, reasons=[],
                                         model_version="m1", feature_time=at, created_at=at))
        insert_groups(session, pilot.id, {lead_ids[f.lead_id]: (f.group, f.cluster) for f in facts}, t0)
    return lead_ids


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_pilot_kpis_from_sandbox_activity_match_the_hand_computed_values(crm: str, crms: Resources, db: Database,
                                                                         sandbox: SandboxCRM) -> None:
    res = crms
    t0 = datetime.fromtimestamp(int(time.time()) - 40 * 86400, tz=UTC).replace(hour=0, minute=0, second=0)
    now = t0 + 30 * DAY
    if crm == "salesforce":
        sandbox.store.sf_set_tracked_fields("Lead", ["Status"])
    with db.session() as session:
        start_pilot(session, "test", PilotInput(name="pod A", control_share=0.5, threshold=75, horizon=200))
    ids = _seed(db, sandbox, crm, t0, now)

    assert collect_facts_now(res, now) == {crm: 6}
    with db.session() as session:
        stored = {row.lead_id: row for row in session.scalars(select(PilotFacts))}
    expected = {f.lead_id: f for f in _facts(t0)}
    for name, lead_id in ids.items():
        f, row = expected[name], stored[lead_id]
        close = f.closed_at.replace(hour=0, minute=0) if crm == "salesforce" and f.closed_at else f.closed_at
        assert (row.first_touch_at, row.sql_at, row.opportunity_at, row.amount, row.closed_at, row.won) == (
            f.first_touch_at, f.sql_at, f.opportunity_at, f.amount, close, f.won), name
    # Read again only after REREAD, and a closed lead never again.
    assert collect_facts_now(res, now + MIN) == {}
    assert collect_facts_now(res, now + timedelta(minutes=11)) == {crm: 3}  # the three still open

    with db.session() as session:
        view = current_value(session, now)
    assert view is not None and view.report.leads == {PILOT: 3, CONTROL: 3}
    kpis = view.report.kpis
    # Response minutes: pilot 4, 6, 2 -> median 4; control 360, 480 and one never touched (censored at now):
    # Kaplan-Meier median 480.
    assert (kpis["response_time"].pilot, kpis["response_time"].control) == (4.0, 480.0)
    assert (kpis["touched_within_5_min"].pilot, kpis["touched_within_5_min"].control) == (pytest.approx(2 / 3), 0.0)
    assert (kpis["mql_to_sql"].pilot, kpis["mql_to_sql"].control) == (1.0, pytest.approx(1 / 3))
    assert (kpis["lead_to_opportunity"].pilot, kpis["lead_to_opportunity"].control) == (
        pytest.approx(2 / 3), pytest.approx(1 / 3))
    assert (kpis["win_rate"].pilot, kpis["win_rate"].control) == (0.5, 0.0)
    assert (kpis["pipeline_per_lead"].pilot, kpis["pipeline_per_lead"].control) == (
        pytest.approx(14000 / 3), pytest.approx(2000.0))
    assert kpis["win_rate"].n_pilot == 2 and kpis["win_rate"].n_control == 1
    assert "not yet conclusive" in view.report.sentence

    with db.session() as session:
        body, mimetype, _name = export(session, now, "csv")
    assert mimetype == "text/csv" and body.splitlines()[0].startswith("kpi,label,unit,pilot,control")
    win = next(line.split(",") for line in body.splitlines() if line.startswith("win_rate,"))
    assert win[3:7] == ["0.5", "0.0", "2", "1"]
