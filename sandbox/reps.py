"""Sales reps for the simulated funnel (issue 17): who works which lead, how soon, and what an alert changes.

A lead becomes hot (an MQL) when it first shows high intent in the simulator's behaviour: a demo request, or a
third pricing view within seven days (what takes the cold-start rules past the hot threshold). A hot pilot lead
raises an alert: its owner calls within minutes (`alert_minutes`, lognormal). A hot control lead raises nothing:
the owner reaches it from the work queue hours later (`queue_hours`). Each rep makes at most `capacity_per_day`
first touches a day; the rest wait for the next day. A touched lead becomes an SQL with a probability that grows
with its hidden intent; won leads (and half the lost SQLs) had an opportunity. The known effect: an alerted lead
wins `win_uplift` more often (absolute), on top of the funnel's own outcome. With `alert_control` (A/A) control
leads are alerted exactly like pilot leads, so the groups differ only by chance.

Everything is deterministic given the seed. `rep_facts` returns scoring.value.LeadFacts, the same facts the
product reads from the CRM, so bench.value checks the product's estimator on them.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sandbox.ids import iso_ms
from sandbox.simulator import FunnelSimulation, SimContact, conversion_probability
from sandbox.store import SandboxStore
from scoring.experiment import PILOT
from scoring.value import LeadFacts

HOT_EVENTS = ("Demo Requested",)
HOT_PRICING_VIEWS = 3  # pricing views within HOT_PRICING_DAYS that make a lead hot
HOT_PRICING_DAYS = 7


@dataclass(frozen=True)
class RepConfig:
    """How the simulated sales team works."""

    reps: int = 8
    alert_minutes: float = 4.0  # median minutes from an alert to the owner's first touch
    queue_hours: float = 6.0  # median hours until an owner reaches a hot lead nobody was alerted about
    cold_days: float = 3.0  # median days until an owner touches a lead that never turned hot
    spread: float = 0.9  # lognormal sigma of every delay
    capacity_per_day: int = 40  # first touches one rep makes a day
    win_uplift: float = 0.05  # absolute win probability an alert adds (the injected effect)
    sql_intercept: float = -0.3  # P(SQL | touched) = sigmoid(sql_intercept + sql_slope * intent)
    sql_slope: float = 1.2
    deal_median: float = 12_000.0
    alert_control: bool = False  # A/A: alert control leads too


@dataclass(frozen=True)
class PilotLead:
    """A simulated lead as the rep model needs it: when it turned hot, its funnel outcome and what it is worth."""

    contact: SimContact
    employees: int
    account_key: str
    hot_at: datetime | None
    outcome_at: datetime | None  # None: the funnel never closes it
    converts: bool
    p_win: float  # the funnel's conversion probability for this contact


def hot_time(events: Sequence[tuple[datetime, str]]) -> datetime | None:
    """The first moment the behaviour shows high intent (a demo request, or 3 pricing views in 7 days)."""
    pricing: deque[datetime] = deque()
    for at, name in events:
        if name in HOT_EVENTS:
            return at
        if name == "Pricing":
            pricing.append(at)
            while pricing and at - pricing[0] > timedelta(days=HOT_PRICING_DAYS):
                pricing.popleft()
            if len(pricing) >= HOT_PRICING_VIEWS:
                return at
    return None


def pilot_leads(sim: FunnelSimulation) -> list[PilotLead]:
    """Every contact of the funnel with its hot moment and its outcome."""
    by_contact: dict[str, list[tuple[datetime, str]]] = {}
    for ev in sim.events:
        by_contact.setdefault(ev.contact_key, []).append((ev.at, ev.name))
    outcome_at = {o.contact_key: o.at for o in sim.outcomes}
    leads = []
    for c in sim.contacts:
        account = sim.account_by_key[c.account_key]
        leads.append(PilotLead(c, account.employees, c.account_key, hot_time(by_contact.get(c.key, [])),
                               outcome_at.get(c.key), c.converts, conversion_probability(sim.config, c.intent,
                                                                                          account.fit)))
    return leads


def _lognormal(rng: random.Random, median: float, spread: float) -> float:
    return median * math.exp(rng.gauss(0.0, spread))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class _Capacity:
    """First touches per rep and day; a full day moves the touch to the next morning."""

    def __init__(self, per_day: int) -> None:
        self.per_day = per_day
        self.used: dict[tuple[str, object], int] = {}

    def book(self, owner: str, at: datetime) -> datetime:
        while self.used.get((owner, at.date()), 0) >= self.per_day:
            at = datetime.combine(at.date() + timedelta(days=1), datetime.min.time(), at.tzinfo) + timedelta(hours=9)
        self.used[(owner, at.date())] = self.used.get((owner, at.date()), 0) + 1
        return at


def rep_facts(leads: Sequence[PilotLead], group_of: Callable[[PilotLead], str], config: RepConfig, seed: int,
              owner_of: Callable[[PilotLead], str] | None = None) -> list[LeadFacts]:
    """What the CRM would record for each lead once the reps have worked it (groups from `group_of`)."""
    rng = random.Random(seed)
    owner_of = owner_of or (lambda lead: f"rep{hash_owner(lead.account_key, config.reps)}")
    capacity = _Capacity(config.capacity_per_day)
    facts: list[LeadFacts] = []
    # Touches are booked in the order leads need them, so capacity goes to whoever asked first.
    ordered = sorted(leads, key=lambda lead: (lead.hot_at or lead.contact.created_at, lead.contact.key))
    for lead in ordered:
        c = lead.contact
        group = group_of(lead)
        owner = owner_of(lead)
        alerted = lead.hot_at is not None and (group == PILOT or config.alert_control)
        if lead.hot_at is None:
            wanted = c.created_at + timedelta(days=_lognormal(rng, config.cold_days, config.spread))
        elif alerted:
            wanted = lead.hot_at + timedelta(minutes=_lognormal(rng, config.alert_minutes, config.spread))
        else:
            wanted = lead.hot_at + timedelta(hours=_lognormal(rng, config.queue_hours, config.spread))
        touch = capacity.book(owner, wanted)
        won: bool | None = None
        closed_at = lead.outcome_at
        if closed_at is not None:
            won = lead.converts
            # The injected effect: P(won | alerted) = P(won) + uplift (a lost lead flips with uplift / (1 - p)).
            if alerted and not won and rng.random() < config.win_uplift / max(1e-9, 1 - lead.p_win):
                won = True
            closed_at = max(closed_at, touch + timedelta(days=1))
        sql = won or rng.random() < _sigmoid(config.sql_intercept + config.sql_slope * c.intent)
        sql_at = touch + timedelta(days=rng.uniform(0.2, 2.0)) if sql else None
        if closed_at is not None and sql_at is not None and sql_at > closed_at:
            sql_at = closed_at
        has_opportunity = sql and (won or rng.random() < 0.5)
        opportunity_at = sql_at if has_opportunity else None
        amount = (_lognormal(rng, config.deal_median * (lead.employees / 200) ** 0.3, 0.6) if has_opportunity
                  else 0.0)
        facts.append(LeadFacts(
            lead_id=c.key, group=group, created_at=c.created_at, cluster=owner, crossed_at=lead.hot_at,
            first_touch_at=touch, sql_at=sql_at, opportunity_at=opportunity_at, amount=round(amount, 2),
            closed_at=closed_at, won=won,
        ))
    return facts


def hash_owner(account_key: str, reps: int) -> int:
    """The rep who owns an account (every contact of an account has the same owner)."""
    return sum(account_key.encode()) % reps


# ---------------------------------------------------------------------------------------------- into the CRM
HUBSPOT_REP_USER_BASE = 3_000_000  # HubSpot user/owner ids of the simulated reps: base + the rep's number


@dataclass
class WrittenActivity:
    """What write_rep_activity put into the sandbox CRM, per kind (for a demo's log line)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        """Count one record of `kind` written."""
        self.counts[kind] = self.counts.get(kind, 0) + 1


def _rep_number(owner: str | None) -> int:
    digits = "".join(ch for ch in str(owner or "") if ch.isdigit())
    return int(digits) if digits else 0


def _seen(at: datetime | None, now: datetime) -> datetime | None:
    return at if at is not None and at <= now else None


def write_rep_activity(store: SandboxStore, facts: Sequence[LeadFacts], records: Mapping[str, tuple[str, str]],
                       now: datetime, *, integration_task_minutes: float | None = 1.0) -> WrittenActivity:
    """Write what the reps did (rep_facts) into the sandbox CRM as the CRM's own activity, up to `now`.

    `records`: lead id (LeadFacts.lead_id) -> (crm, record id): a HubSpot contact, a Salesforce Lead or Contact.
    Per lead: leadbridge's own task for the owner `integration_task_minutes` after the threshold crossing (made
    by the integration user, so it never counts as a touch), the owner's call at the first touch and a status
    change, the move to SQL, an opportunity with its amount, and its close as won or lost; each at the time the
    facts say, by the owner (cluster) as its CRM user. A lead that closed without an opportunity is left open in
    the CRM (only its opportunity says won or lost).
    """
    written = WrittenActivity()
    sf_users: dict[str, str] = {}
    for fact in facts:
        target = records.get(fact.lead_id)
        if target is None:
            continue
        crm, record_id = target
        if crm == "hubspot":
            _hubspot_activity(store, fact, record_id, now, integration_task_minutes, written)
        elif crm == "salesforce":
            owner = str(fact.cluster or "rep0")
            if owner not in sf_users:
                sf_users[owner] = store.sf_create("User", {"Email": f"{owner}@sandbox.invalid",
                                                           "Username": f"{owner}@sandbox.leadbridge"})
            _salesforce_activity(store, fact, record_id, sf_users[owner], now, integration_task_minutes, written)
    return written


def _hubspot_activity(store: SandboxStore, fact: LeadFacts, contact: str, now: datetime,
                      task_minutes: float | None, written: WrittenActivity) -> None:
    rep = str(HUBSPOT_REP_USER_BASE + _rep_number(fact.cluster))

    def engage(object_type: str, at: datetime, user: str | None, props: dict[str, str]) -> None:
        obj = store.hs_create(object_type, {"hs_timestamp": iso_ms(at.timestamp()), "hubspot_owner_id": rep, **props},
                              source="API" if user is None else "CRM_UI", created_at=at.timestamp(),
                              user_id=user)
        store.hs_associate(object_type, str(obj["id"]), "contacts", contact)
        written.add(f"hubspot.{object_type}")

    crossed = _seen(fact.crossed_at, now)
    if crossed is not None and task_minutes is not None:
        at = crossed + timedelta(minutes=task_minutes)
        if at <= now:
            from sandbox.server import (
                DEFAULT_HUBSPOT_APP_USER_ID,  # the private app's user: leadbridge's own task
            )

            engage("tasks", at, str(DEFAULT_HUBSPOT_APP_USER_ID), {"hs_task_subject": "Hot lead: call now"})
    touch = _seen(fact.first_touch_at, now)
    if touch is not None:
        engage("calls", touch, rep, {"hs_call_direction": "OUTBOUND", "hs_call_status": "COMPLETED"})
        store.hs_update("contacts", contact, {"hs_lead_status": "ATTEMPTED_TO_CONTACT"}, source="CRM_UI",
                        at=touch.timestamp() + 60, user_id=rep)
    sql = _seen(fact.sql_at, now)
    if sql is not None:
        store.hs_update("contacts", contact, {"lifecyclestage": "salesqualifiedlead"}, source="CRM_UI",
                        at=sql.timestamp(), user_id=rep)
    opened = _seen(fact.opportunity_at, now)
    if opened is None:
        return
    deal = store.hs_create("deals", {"dealname": f"Deal {fact.lead_id}", "amount": str(fact.amount),
                                     "dealstage": "qualifiedtobuy", "pipeline": "default", "hubspot_owner_id": rep},
                           source="CRM_UI", created_at=opened.timestamp(), user_id=rep)
    store.hs_associate("deals", str(deal["id"]), "contacts", contact)
    written.add("hubspot.deals")
    closed = _seen(fact.closed_at, now)
    if closed is not None and fact.won is not None:
        store.hs_update("deals", str(deal["id"]), {"dealstage": "closedwon" if fact.won else "closedlost",
                                                   "closedate": iso_ms(closed.timestamp())},
                        source="CRM_UI", at=closed.timestamp(), user_id=rep)


def _salesforce_activity(store: SandboxStore, fact: LeadFacts, person: str, rep: str, now: datetime,
                         task_minutes: float | None, written: WrittenActivity) -> None:
    is_lead = person.startswith("00Q")
    crossed = _seen(fact.crossed_at, now)
    if crossed is not None and task_minutes is not None:
        at = crossed + timedelta(minutes=task_minutes)
        if at <= now:  # created by the API (session) user: leadbridge's own task for the owner
            store.sf_create("Task", {"WhoId": person, "OwnerId": rep, "Subject": "Hot lead: call now"},
                            created_at=at.timestamp())
            written.add("salesforce.Task")
    touch = _seen(fact.first_touch_at, now)
    if touch is not None:
        store.sf_create("Task", {"WhoId": person, "OwnerId": rep, "Subject": "Call", "TaskSubtype": "Call",
                                 "CallType": "Outbound", "Status": "Completed"}, created_at=touch.timestamp(),
                        user_id=rep)
        written.add("salesforce.Task")
        if is_lead:
            store.sf_update("Lead", person, {"Status": "Working - Contacted"}, at=touch.timestamp() + 60, user_id=rep)
    sql = _seen(fact.sql_at, now)
    if sql is not None and is_lead:
        store.sf_update("Lead", person, {"Status": "Qualified"}, at=sql.timestamp(), user_id=rep)
    opened = _seen(fact.opportunity_at, now)
    if opened is None:
        return
    closed = _seen(fact.closed_at, now)
    close_date = (closed or opened + timedelta(days=30)).date().isoformat()
    opportunity = store.sf_create("Opportunity", {"Name": f"Deal {fact.lead_id}", "OwnerId": rep,
                                                  "StageName": "Qualification", "Amount": fact.amount,
                                                  "CloseDate": close_date}, created_at=opened.timestamp(),
                                  user_id=rep)
    written.add("salesforce.Opportunity")
    if is_lead:
        # Working an SQL into an opportunity converts the Lead (its Contact and Account are left out here).
        store.sf_system_update("Lead", person, {"IsConverted": True, "ConvertedDate": opened.date().isoformat(),
                                                "ConvertedOpportunityId": opportunity})
    else:
        store.sf_create("OpportunityContactRole", {"OpportunityId": opportunity, "ContactId": person,
                                                   "IsPrimary": True}, created_at=opened.timestamp(), user_id=rep)
    if closed is not None and fact.won is not None:
        store.sf_update("Opportunity", opportunity, {"StageName": "Closed Won" if fact.won else "Closed Lost",
                                                     "CloseDate": close_date}, at=closed.timestamp(), user_id=rep)
