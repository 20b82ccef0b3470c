"""Score movement: trend over a window with a steady band, previous score and change, the what-changed sentence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.records import Movement
from scoring.movement import (
    DECLINING,
    IMPROVING,
    STEADY,
    TrendRule,
    change_sentence,
    reference_of,
    score_held_at,
    trend_of,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RULE = TrendRule(window=timedelta(hours=24), steady=5)


@pytest.mark.parametrize(("current", "reference", "trend"), [
    (60, 40, IMPROVING), (40, 60, DECLINING), (45, 40, STEADY), (35, 40, STEADY),  # +-5 is the steady band's edge
    (46, 40, IMPROVING), (34, 40, DECLINING), (40, 40, STEADY), (40, None, None),
])
def test_trend_compares_with_the_reference_inside_a_steady_band(current: int, reference: int | None,
                                                               trend: str | None) -> None:
    assert trend_of(current, reference, 5) == trend


def test_a_zero_band_makes_any_move_a_trend() -> None:
    assert trend_of(41, 40, 0) == IMPROVING and trend_of(39, 40, 0) == DECLINING and trend_of(40, 40, 0) == STEADY


def test_sentence_names_the_reasons_that_came_with_a_rise() -> None:
    before = ["+ viewed pricing 2x in 7 days", "- free e-mail domain"]
    after = ["+ requested a demo", "+ viewed pricing 2x in 7 days", "- free e-mail domain"]
    assert change_sentence(12, before, after) == "+12: requested a demo"


def test_sentence_for_a_fall_names_new_negatives_then_lost_positives() -> None:
    before = ["+ requested a demo", "+ viewed pricing 4x in 7 days"]
    after = ["+ viewed pricing 4x in 7 days", "- no visit in 30 days"]
    assert change_sentence(-20, before, after) == "-20: no visit in 30 days; no longer requested a demo"


def test_sentence_leaves_out_reasons_that_pushed_against_the_move() -> None:
    # A new negative reason held a rise back; a lost negative explains it.
    before = ["- free e-mail domain"]
    after = ["+ requested a demo", "- company too small"]
    assert change_sentence(8, before, after) == "+8: requested a demo; no longer free e-mail domain"


def test_sentence_with_the_same_reasons_says_they_weigh_differently() -> None:
    reasons = ["+ requested a demo"]
    assert change_sentence(3, reasons, reasons) == "+3: the same reasons weigh more"
    assert change_sentence(-3, reasons, reasons) == "-3: the same reasons weigh less"


def test_sentence_is_cut_on_a_reason_within_the_limit() -> None:
    after = [f"+ reason number {i} " + "x" * 30 for i in range(20)]
    text = change_sentence(30, [], after, limit=120)
    assert len(text) <= 120 and text.startswith("+30: reason number 0") and not text.endswith(";")
    assert text.count(";") == len(text.split("; ")) - 1


def test_first_score_has_no_movement() -> None:
    assert RULE.advance(Movement(), None, None, 40, ["+ requested a demo"], None, T0) == Movement()


def test_a_new_value_records_previous_change_time_and_sentence() -> None:
    moved = RULE.advance(Movement(), 40, ["+ viewed pricing"], 52, ["+ requested a demo", "+ viewed pricing"],
                         None, T0)
    assert moved == Movement(previous=40, trend=IMPROVING, changed_at=T0, reason="+12: requested a demo")
    assert moved.change(52) == 12


def test_the_trend_compares_with_the_score_held_at_the_window_start() -> None:
    # Held 50 at the window's start (first row inside it moved 50 -> 70), now 70 -> 52: still +2 over the window.
    moved = RULE.advance(Movement(50, IMPROVING, T0, "+20: requested a demo"), 70, ["+ requested a demo"], 52, [],
                         (70, 50), T0 + timedelta(hours=3))
    assert (moved.previous, moved.change(52), moved.trend) == (70, -18, STEADY)
    assert moved.reason == "-18: no longer requested a demo"


def test_a_lead_whose_first_score_is_inside_the_window_counts_from_it() -> None:
    moved = RULE.advance(Movement(), 30, [], 45, [], (30, None), T0)
    assert moved.trend == IMPROVING


def test_the_same_value_again_keeps_the_last_change_and_rereads_the_trend() -> None:
    before = Movement(40, IMPROVING, T0, "+12: requested a demo")
    # New reasons, same score, and the change has left the window (no history row inside it).
    again = RULE.advance(before, 52, ["+ a"], 52, ["+ b"], None, T0 + timedelta(hours=30))
    assert again == Movement(40, STEADY, T0, "+12: requested a demo")


def test_a_trend_settles_one_window_after_the_last_change_and_not_before() -> None:
    moving = Movement(40, IMPROVING, T0, "+12: requested a demo")
    assert RULE.settle(moving, T0 + timedelta(hours=23, minutes=59)) == moving
    assert RULE.settle(moving, T0 + timedelta(hours=24)).trend == STEADY
    assert RULE.settle(Movement(), T0 + timedelta(days=9)) == Movement()  # nothing to settle
    assert RULE.settled_before(T0 + timedelta(hours=24)) == T0


def test_reference_and_held_score_from_history() -> None:
    assert reference_of(None, 61) == 61  # no change inside the window: held the current score all along
    assert reference_of((70, 50), 70) == 50 and reference_of((30, None), 45) == 30
    history = [(T0, 30), (T0 + timedelta(hours=2), 45), (T0 + timedelta(hours=5), 60)]
    assert score_held_at(history, T0 - timedelta(seconds=1)) is None
    assert score_held_at(history, T0 + timedelta(hours=2)) == 45  # a tie goes to the score set at that instant
    assert score_held_at(history, T0 + timedelta(hours=4)) == 45
    assert score_held_at(history, T0 + timedelta(days=3)) == 60
