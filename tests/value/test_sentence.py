"""The plain-language sentence, from computed results."""

from __future__ import annotations

import math

from scoring.experiment import Interval, ValueSummary, value_sentence


def test_the_issue_example() -> None:
    summary = ValueSummary(Interval(-41.2, -63.4, -18.1), Interval(0.021, -0.008, 0.050), conclusive=False,
                           more_needed=873)
    assert value_sentence(summary) == ("Scored leads were contacted 41 min sooner (95% CI 18-63 min); win rate +2.1 "
                                       "points (CI -0.8 to +5.0), not yet conclusive: about 870 more closed leads "
                                       "needed")


def test_an_interval_across_zero_says_both_directions() -> None:
    summary = ValueSummary(Interval(-4.0, -9.0, 3.0), None, conclusive=False)
    assert value_sentence(summary) == ("Scored leads were contacted 4 min sooner (95% CI 9 min sooner to 3 min "
                                       "later), not yet conclusive")


def test_later_and_unbounded() -> None:
    summary = ValueSummary(Interval(6.0, 2.0, 11.0), None, conclusive=True)
    assert value_sentence(summary) == "Scored leads were contacted 6 min later (95% CI 2-11 min), conclusive"
    summary = ValueSummary(Interval(-12.0, -math.inf, 4.0), None, conclusive=False, more_needed=12_345)
    assert value_sentence(summary) == ("Scored leads were contacted 12 min sooner (95% CI no bound to 4 min later), "
                                       "not yet conclusive: about 12,000 more closed leads needed")
    summary = ValueSummary(Interval(-2.0, -math.inf, math.inf), None, conclusive=False)
    assert value_sentence(summary) == ("Scored leads were contacted 2 min sooner (too few touched leads yet for an "
                                       "interval), not yet conclusive")


def test_win_rate_alone_and_nothing_at_all() -> None:
    summary = ValueSummary(None, Interval(0.051, 0.012, 0.090), conclusive=True)
    assert value_sentence(summary) == "Win rate +5.1 points (95% CI +1.2 to +9.0), conclusive"
    assert value_sentence(ValueSummary(None, None, conclusive=False)) == "No results yet"
