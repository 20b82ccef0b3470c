"""A lead's CRM activity as KPI facts (scoring.activity): first touch, SQL time, opportunity facts, by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.records import LeadActivity, Opportunity, StageChange, Touch
from scoring.activity import first_touch, lead_facts, opportunity_facts, sql_time
from scoring.experiment import PILOT

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)
RULES = {"lifecycle_stage": ["salesqualifiedlead", "opportunity"], "lead_status": ["Qualified"]}


def test_first_touch_skips_the_integration_and_what_came_before_creation() -> None:
    activity = LeadActivity("1", touches=(
        Touch(T0 - MIN, "call", "7"),  # before the lead existed (an old engagement associated later)
        Touch(T0 + MIN, "task", "7", by_integration=True),  # leadbridge's own task
        Touch(T0 + 9 * MIN, "email", "7"),
        Touch(T0 + 5 * MIN, "status_change", "7"),
    ), created_at=T0)
    assert first_touch(activity) == T0 + 5 * MIN
    assert first_touch(activity, after=T0 + 6 * MIN) == T0 + 9 * MIN
    assert first_touch(LeadActivity("2", created_at=T0)) is None


def test_sql_time_is_the_first_qualifying_value_whatever_the_case() -> None:
    stages = (StageChange(T0, "lead_status", "Working - Contacted"), StageChange(T0 + DAY, "lead_status", "qualified"),
              StageChange(T0 + 2 * DAY, "lifecycle_stage", "opportunity"),
              StageChange(T0 + 3 * DAY, "opportunity_stage", "Qualification"))
    assert sql_time(stages, RULES) == T0 + DAY
    assert sql_time(stages[:1], RULES) is None
    assert sql_time(stages, {"lifecycle_stage": ["opportunity"]}) == T0 + 2 * DAY


def test_opportunity_facts() -> None:
    won = Opportunity("a", T0 + 2 * DAY, 5000.0, T0 + 20 * DAY, True)
    lost = Opportunity("b", T0 + DAY, 3000.0, T0 + 30 * DAY, False)
    open_ = Opportunity("c", T0 + 3 * DAY, None, None, None)
    both = opportunity_facts([won, lost])
    assert (both.opportunity_at, both.amount, both.closed_at, both.won) == (T0 + DAY, 8000.0, T0 + 20 * DAY, True)
    lost_only = opportunity_facts([lost, Opportunity("d", T0, 1.0, T0 + 5 * DAY, False)])
    assert (lost_only.closed_at, lost_only.won) == (T0 + 30 * DAY, False)
    pending = opportunity_facts([lost, open_])
    assert (pending.opportunity_at, pending.amount, pending.closed_at, pending.won) == (T0 + DAY, 3000.0, None, None)
    none = opportunity_facts([])
    assert (none.opportunity_at, none.amount, none.closed_at, none.won) == (None, 0.0, None, None)


def test_lead_facts_puts_it_together() -> None:
    activity = LeadActivity("1", touches=(Touch(T0 + 3 * MIN, "call", "7"),),
                            stages=(StageChange(T0 + 2 * DAY, "lead_status", "Qualified"),),
                            opportunities=(Opportunity("a", T0 + DAY, 5000.0, T0 + 20 * DAY, True),),
                            created_at=T0, owner_id="7")
    facts = lead_facts(activity, lead_id="L1", group=PILOT, created_at=T0, rules=RULES, crossed_at=T0 + MIN)
    assert facts.first_touch_at == T0 + 3 * MIN
    assert facts.sql_at == T0 + DAY  # the opportunity came before the status said so
    assert (facts.opportunity_at, facts.amount, facts.closed_at, facts.won) == (T0 + DAY, 5000.0, T0 + 20 * DAY, True)
    assert facts.cluster == "7" and facts.crossed_at == T0 + MIN
