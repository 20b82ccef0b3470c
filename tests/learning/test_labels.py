"""Maturity-window labelling: who is won, who is lost, and as of when their features are built."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.records import Outcome
from scoring.labels import LabelPolicy, LeadHistory, label_leads, label_one

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = LabelPolicy(maturity=90 * DAY, gap=DAY)


def history(*activity_days: float, first: float = 0) -> LeadHistory:
    return LeadHistory(T0 + first * DAY, tuple(T0 + d * DAY for d in sorted(activity_days)))


def test_a_quiet_lead_is_not_negative_before_the_maturity_window() -> None:
    lead = history(1, 3, 10)
    for day in (0, 30, 89, 89.99):
        assert label_one("a", lead, None, None, T0 + day * DAY, POLICY) is None, day
    label = label_one("a", lead, None, None, T0 + 90 * DAY, POLICY)
    assert label is not None and label.won is False
    assert label.labelled_at == T0 + 90 * DAY
    assert label.decision_time == T0 + 10 * DAY  # its last activity inside the window
    assert label.source == "maturity"


def test_a_closed_lost_deal_inside_the_window_is_not_negative_yet() -> None:
    lost = Outcome("a", False, T0 + 20 * DAY, "hubspot.deal")
    assert label_one("a", history(5), None, lost, T0 + 60 * DAY, POLICY) is None
    label = label_one("a", history(5), None, lost, T0 + 90 * DAY, POLICY)
    assert label is not None and not label.won
    assert label.decision_time == T0 + 19 * DAY  # the lost outcome minus the gap
    assert label.source == "hubspot.deal"


def test_a_win_labels_at_once_even_after_a_loss_and_after_maturity() -> None:
    lost = Outcome("a", False, T0 + 10 * DAY, "hubspot.deal")
    won = Outcome("a", True, T0 + 40 * DAY, "hubspot.lifecyclestage")
    labels = label_leads({"a": history(1, 30)}, [lost, won], T0 + 41 * DAY, POLICY)
    assert [(x.lead_id, x.won, x.decision_time, x.labelled_at) for x in labels] == [
        ("a", True, T0 + 39 * DAY, T0 + 40 * DAY)]
    late = Outcome("b", True, T0 + 200 * DAY, "salesforce.lead")
    # Negative at day 120 (matured, no win yet) ...
    assert label_leads({"b": history(1)}, [late], T0 + 120 * DAY, POLICY)[0].won is False
    # ... and positive once the late conversion is known.
    assert label_leads({"b": history(1)}, [late], T0 + 201 * DAY, POLICY)[0].won is True


def test_outcomes_from_the_future_are_ignored_and_order_is_by_label_time() -> None:
    outcomes = [Outcome("a", True, T0 + 50 * DAY), Outcome("b", True, T0 + 5 * DAY)]
    labels = label_leads({"a": history(1), "b": history(1), "c": history(2)}, outcomes, T0 + 30 * DAY, POLICY)
    assert [x.lead_id for x in labels] == ["b"]  # a's win is in the future, c is not mature
    labels = label_leads({"a": history(1), "b": history(1), "c": history(2)}, outcomes, T0 + 95 * DAY, POLICY)
    assert [x.lead_id for x in labels] == ["b", "a", "c"]


def test_decision_time_is_clamped_to_the_lead_lifetime() -> None:
    won = Outcome("a", True, T0 + 10 * DAY + timedelta(hours=2))
    label = label_one("a", history(first=10), won, None, T0 + 11 * DAY, POLICY)
    assert label is not None and label.decision_time == T0 + 10 * DAY  # never before first seen
    never_active = label_one("z", history(first=3), None, None, T0 + 100 * DAY, POLICY)
    assert never_active is not None and never_active.decision_time == T0 + 3 * DAY


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        LabelPolicy(maturity=timedelta(0))
    with pytest.raises(ValueError):
        LabelPolicy(gap=-DAY)
