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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox.simulator import FunnelSimulation, SimContact, conversion_probability
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
