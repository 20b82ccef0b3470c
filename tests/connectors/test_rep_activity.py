"""The simulator's reps write their work into the sandbox CRM (sandbox.reps.write_rep_activity); read back through
the real SDKs by each connector's read_activity, it gives the same KPI facts the rep model produced."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from connectors.hubspot.client import HubSpotConnector
from connectors.salesforce.client import SalesforceConnector
from sandbox import DEFAULT_HUBSPOT_APP_USER_ID, DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from sandbox.reps import write_rep_activity
from scoring.activity import lead_facts
from scoring.experiment import CONTROL, PILOT
from scoring.value import LeadFacts

MIN = timedelta(minutes=1)
DAY = timedelta(days=1)


def _facts(t0: datetime) -> list[LeadFacts]:
    return [
        LeadFacts("won", PILOT, t0, cluster="rep1", crossed_at=t0 + MIN, first_touch_at=t0 + 4 * MIN,
                  sql_at=t0 + DAY, opportunity_at=t0 + DAY, amount=12000.0, closed_at=t0 + 20 * DAY, won=True),
        LeadFacts("lost", CONTROL, t0, cluster="rep2", crossed_at=t0 + MIN, first_touch_at=t0 + 6 * 60 * MIN,
                  sql_at=t0 + 2 * DAY, opportunity_at=t0 + 2 * DAY, amount=3000.0, closed_at=t0 + 9 * DAY, won=False),
        LeadFacts("open", PILOT, t0, cluster="rep1", first_touch_at=t0 + 3 * DAY),
        LeadFacts("later", PILOT, t0, cluster="rep1", first_touch_at=t0 + 90 * DAY),  # after `now`: not yet
    ]


def _check(got: dict, ids: dict[str, str], facts: list[LeadFacts], rules: dict, now: datetime,
           day_only: bool = False) -> None:
    for fact in facts:
        activity = got[ids[fact.lead_id]]
        back = lead_facts(activity, lead_id=fact.lead_id, group=fact.group, created_at=fact.created_at, rules=rules)
        expected_close = fact.closed_at
        if day_only and expected_close is not None:  # a Salesforce CloseDate is a date
            expected_close = expected_close.replace(hour=0, minute=0)
        seen = fact.first_touch_at if fact.first_touch_at and fact.first_touch_at <= now else None
        assert (back.first_touch_at, back.sql_at, back.opportunity_at, back.amount, back.closed_at, back.won) == (
            seen, fact.sql_at, fact.opportunity_at, fact.amount, expected_close, fact.won), fact.lead_id
        # leadbridge's own task after the crossing is there, flagged, and not the first touch.
        assert sum(t.by_integration for t in activity.touches) == (1 if fact.crossed_at else 0)


def test_rep_activity_round_trips_through_hubspot(sandbox: SandboxCRM) -> None:
    t0 = datetime.fromtimestamp(int(time.time()) - 60 * 86400, tz=UTC)
    now = t0 + 50 * DAY
    facts = _facts(t0)
    ids = {f.lead_id: sandbox.store.hs_create("contacts", {"email": f"{f.lead_id}@acme.io"},
                                              created_at=t0.timestamp())["id"] for f in facts}
    written = write_rep_activity(sandbox.store, facts, {k: ("hubspot", v) for k, v in ids.items()}, now)
    assert written.counts == {"hubspot.tasks": 2, "hubspot.calls": 3, "hubspot.deals": 2}
    connector = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url,
                                 integration_user_id=str(DEFAULT_HUBSPOT_APP_USER_ID))
    _check(connector.read_activity(list(ids.values())), ids, facts, connector.sql_rules, now)


def test_rep_activity_round_trips_through_salesforce(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    t0 = datetime.fromtimestamp(int(time.time()) - 60 * 86400, tz=UTC).replace(hour=0, minute=0, second=0)
    now = t0 + 50 * DAY
    facts = _facts(t0)
    sandbox.store.sf_set_tracked_fields("Lead", ["Status"])
    ids = {f.lead_id: sandbox.store.sf_create("Lead", {"LastName": f.lead_id, "Company": "Acme"},
                                              created_at=t0.timestamp()) for f in facts[:3]}
    ids["later"] = sandbox.store.sf_create("Contact", {"LastName": "later"}, created_at=t0.timestamp())
    written = write_rep_activity(sandbox.store, facts, {k: ("salesforce", v) for k, v in ids.items()}, now)
    assert written.counts == {"salesforce.Task": 5, "salesforce.Opportunity": 2}
    _check(salesforce.read_activity(list(ids.values())), ids, facts, salesforce.sql_rules, now, day_only=True)
