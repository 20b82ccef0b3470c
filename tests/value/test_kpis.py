"""Pilot vs control KPIs from per-lead facts (scoring.value), checked against values computed by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from scoring.experiment import CONTROL, PILOT, rate_difference
from scoring.value import LeadFacts, Plan, response_times, value_report, weekly

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=60)
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)


def lead(i: int, group: str, **facts: object) -> LeadFacts:
    return LeadFacts(lead_id=str(i), group=group, created_at=T0, **facts)  # type: ignore[arg-type]


def fixture() -> list[LeadFacts]:
    """Four pilot and four control leads, with every KPI's inputs chosen to give round numbers."""
    return [
        # Pilot: touched 2 and 4 minutes after crossing, one touched before it (0), one crossed and never touched.
        lead(1, PILOT, crossed_at=T0, first_touch_at=T0 + 2 * MIN, sql_at=T0 + DAY, opportunity_at=T0 + DAY,
             amount=10_000.0, closed_at=T0 + 20 * DAY, won=True),
        lead(2, PILOT, crossed_at=T0, first_touch_at=T0 + 4 * MIN, sql_at=T0 + DAY, opportunity_at=T0 + 2 * DAY,
             amount=6_000.0, closed_at=T0 + 30 * DAY, won=False),
        lead(3, PILOT, crossed_at=T0 + DAY, first_touch_at=T0, closed_at=T0 + 10 * DAY, won=False),
        lead(4, PILOT, crossed_at=T0 + 2 * DAY),
        # Control: touched after 60 and 120 minutes; one never crossed; one crossed, untouched.
        lead(5, CONTROL, crossed_at=T0, first_touch_at=T0 + 60 * MIN, sql_at=T0 + DAY, opportunity_at=T0 + DAY,
             amount=8_000.0, closed_at=T0 + 40 * DAY, won=True),
        lead(6, CONTROL, crossed_at=T0, first_touch_at=T0 + 120 * MIN, closed_at=T0 + 15 * DAY, won=False),
        lead(7, CONTROL, first_touch_at=T0 + 3 * DAY, closed_at=T0 + 25 * DAY, won=False),
        lead(8, CONTROL, crossed_at=T0 + DAY),
    ]


def test_response_times_censor_untouched_leads_and_count_earlier_touches_as_zero() -> None:
    durations, touched = response_times(fixture()[:4], NOW)
    assert durations.tolist() == [2.0, 4.0, 0.0, (NOW - T0 - 2 * DAY) / MIN]
    assert touched.tolist() == [True, True, True, False]


def test_every_kpi_matches_the_hand_computed_values() -> None:
    report = value_report(fixture(), NOW, control_share=0.5, plan=Plan(horizon=100, draws=200))
    k = report.kpis
    # Kaplan-Meier over pilot (0, 2, 4, censored): S drops to 3/4, 2/4, 1/4: the median is 2 minutes.
    # Control (60, 120, censored): S = 2/3, 1/3: the median is 120 minutes.
    assert (k["response_time"].pilot, k["response_time"].control) == (2.0, 120.0)
    assert k["response_time"].difference is not None and k["response_time"].difference.estimate == -118.0
    assert k["touched_within_5_min"].pilot == pytest.approx(0.75) and k["touched_within_5_min"].control == 0.0
    # MQL -> SQL: pilot 2 of 4 MQLs, control 1 of 3.
    assert k["mql_to_sql"].pilot == 0.5 and k["mql_to_sql"].control == pytest.approx(1 / 3)
    assert k["mql_to_sql"].difference == rate_difference(2, 4, 1, 3)
    # Lead -> opportunity: 2 of 4 and 1 of 4. Win rate: 1 of 3 closed and 1 of 3 closed.
    assert (k["lead_to_opportunity"].pilot, k["lead_to_opportunity"].control) == (0.5, 0.25)
    assert k["win_rate"].pilot == pytest.approx(1 / 3) and k["win_rate"].control == pytest.approx(1 / 3)
    assert (k["win_rate"].n_pilot, k["win_rate"].n_control) == (3, 3)
    # Cycle: the won leads took 20 and 40 days; pipeline per lead 16,000 / 4 and 8,000 / 4.
    assert (k["cycle_days"].pilot, k["cycle_days"].control) == (20.0, 40.0)
    assert (k["pipeline_per_lead"].pilot, k["pipeline_per_lead"].control) == (4_000.0, 2_000.0)
    # Velocity per 100 leads a day: 100 x opportunities/leads x win rate (of closed opportunities) x deal / cycle.
    assert k["velocity"].pilot == pytest.approx(100 * 0.5 * 0.5 * 8_000 / 20)
    assert k["velocity"].control == pytest.approx(100 * 0.25 * 1.0 * 8_000 / 40)
    assert report.leads == {PILOT: 4, CONTROL: 4}
    assert not report.conclusive and report.more_needed > 0
    assert report.sentence.startswith("Scored leads were contacted 118 min sooner")


def test_facts_after_now_do_not_count_yet() -> None:
    report = value_report(fixture(), T0 + 90 * MIN, control_share=0.5, plan=Plan(draws=50), only=["response_time"])
    # At 90 minutes the control lead touched at 120 is still waiting (censored at 90: S(60) = 1/2, median 60);
    # leads crossing on later days have not crossed yet, and nothing has closed.
    response = report.kpis["response_time"]
    assert (response.pilot, response.control, response.n_pilot, response.n_control) == (2.0, 60.0, 2, 2)
    assert report.kpis["win_rate"].difference is None and report.kpis["win_rate"].n_pilot == 0
    assert set(report.kpis) == {"response_time", "touched_within_5_min", "win_rate"}


def test_cluster_bootstrap_is_wider_when_owners_were_assigned() -> None:
    """Leads of one owner share the owner's habits: resampling owners must give a wider interval than leads."""
    facts = []
    for owner in range(12):
        group = PILOT if owner % 2 else CONTROL
        speed = 10 + 15 * owner  # owners differ a lot; leads of one owner barely do
        for j in range(30):
            facts.append(LeadFacts(f"{owner}-{j}", group, T0, cluster=f"o{owner}", crossed_at=T0,
                                   first_touch_at=T0 + (speed + j % 3) * MIN, closed_at=T0 + DAY,
                                   won=j < 2 + 2 * owner))
    leads = value_report(facts, NOW, 0.5, Plan(draws=300)).kpis
    owners = value_report(facts, NOW, 0.5, Plan(draws=300, clustered=True)).kpis
    for name in ("response_time", "win_rate"):
        a, b = leads[name].difference, owners[name].difference
        assert a is not None and b is not None
        assert (b.high - b.low) > 1.5 * (a.high - a.low), name
    assert owners["win_rate"].method == "cluster bootstrap"


def test_weekly_series_gives_each_group_a_point_per_week_with_wilson_bands() -> None:
    points = weekly(fixture(), "win_rate", T0, T0 + 35 * DAY)
    assert {p.group for p in points} == {PILOT, CONTROL} and len(points) == 2 * 6
    week3 = [p for p in points if p.week == T0 + 14 * DAY and p.group == PILOT]
    assert week3[0].interval.estimate == 1.0 and week3[0].n == 1 and 0 < week3[0].interval.low < 1  # the lead won on day 20
    response = weekly(fixture(), "response_time", T0, T0 + 7 * DAY)
    first = {p.group: p for p in response if p.week == T0}
    assert first[PILOT].interval.estimate == 2.0 and first[CONTROL].interval.estimate == 120.0
    with pytest.raises(ValueError, match="no weekly series"):
        weekly(fixture(), "cycle_days", T0, NOW)
    assert all(p.interval is None or math.isfinite(p.interval.estimate) for p in points)
