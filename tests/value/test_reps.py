"""The simulator's sales reps (sandbox.reps): alerts, the queue, capacity and the injected win uplift."""

from __future__ import annotations

import statistics
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sandbox.reps import PilotLead, RepConfig, hot_time, pilot_leads, rep_facts
from sandbox.simulator import SimulatorConfig, simulate
from scoring.experiment import CONTROL, PILOT, assign_group
from scoring.value import LeadFacts

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_a_lead_turns_hot_on_a_demo_request_or_a_third_pricing_view_in_a_week() -> None:
    day = timedelta(days=1)
    assert hot_time([(T0, "Pricing"), (T0 + day, "Demo Requested")]) == T0 + day
    assert hot_time([(T0, "Pricing"), (T0 + 2 * day, "Pricing"), (T0 + 3 * day, "Pricing")]) == T0 + 3 * day
    # Three views spread over more than a week are not the same burst of interest.
    assert hot_time([(T0, "Pricing"), (T0 + 5 * day, "Pricing"), (T0 + 9 * day, "Pricing")]) is None


def _minutes_to_touch(facts: list[LeadFacts], group: str) -> list[float]:
    return [(f.first_touch_at - f.crossed_at).total_seconds() / 60 for f in facts
            if f.group == group and f.crossed_at is not None and f.first_touch_at is not None]


def _half(lead: PilotLead) -> str:
    return assign_group(lead.contact.key, "salt", 0.5)


def test_alerted_pilot_leads_are_touched_in_minutes_control_leads_in_hours_and_runs_repeat() -> None:
    leads = pilot_leads(simulate(SimulatorConfig(seed=3, accounts=200)))
    assert sum(lead.hot_at is not None for lead in leads) > 50
    facts = rep_facts(leads, _half, RepConfig(), seed=1)
    assert facts == rep_facts(leads, _half, RepConfig(), seed=1)
    pilot, control = _minutes_to_touch(facts, PILOT), _minutes_to_touch(facts, CONTROL)
    assert statistics.median(pilot) < 10 < 120 < statistics.median(control)
    # A/A: control leads are alerted too, and the groups differ only by chance.
    aa = rep_facts(leads, _half, replace(RepConfig(), alert_control=True), seed=1)
    assert statistics.median(_minutes_to_touch(aa, CONTROL)) < 10
    # Every lead's owner is its account's, and closed leads close after their first touch.
    by_key = {lead.contact.key: lead for lead in leads}
    owners: dict[str, str | None] = {}
    for f in facts:
        assert owners.setdefault(by_key[f.lead_id].account_key, f.cluster) == f.cluster
        assert f.closed_at is None or (f.first_touch_at is not None and f.closed_at > f.first_touch_at)


def test_a_rep_makes_at_most_capacity_first_touches_a_day() -> None:
    leads = pilot_leads(simulate(SimulatorConfig(seed=4, accounts=150)))
    facts = rep_facts(leads, lambda lead: PILOT, RepConfig(reps=2, capacity_per_day=5), seed=2)
    per_day: dict[tuple[str | None, object], int] = {}
    for f in facts:
        assert f.first_touch_at is not None
        key = (f.cluster, f.first_touch_at.date())
        per_day[key] = per_day.get(key, 0) + 1
    assert max(per_day.values()) == 5


def test_the_uplift_raises_the_win_rate_of_alerted_leads_only() -> None:
    leads = [lead for seed in (5, 6) for lead in pilot_leads(simulate(SimulatorConfig(seed=seed, accounts=300)))]

    def win_rate(group: str, uplift: float) -> float:
        facts = rep_facts(leads, lambda lead: group, RepConfig(win_uplift=uplift), seed=3)
        closed = [f for f in facts if f.won is not None and f.crossed_at is not None]
        return sum(bool(f.won) for f in closed) / len(closed)

    assert win_rate(CONTROL, 0.3) == win_rate(CONTROL, 0.0)
    assert win_rate(PILOT, 0.3) - win_rate(PILOT, 0.0) > 0.2
