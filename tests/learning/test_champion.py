"""The promotion decision: a challenger must beat the champion by the margin on the same holdout."""

from __future__ import annotations

import math

import pytest

from scoring.champion import decide_promotion


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promote"),
    [
        (0.80, 0.79, 0.005, True),  # better by 0.01
        (0.795, 0.79, 0.005, True),  # exactly the margin
        (0.794, 0.79, 0.005, False),  # better, but not by enough
        (0.78, 0.79, 0.0, False),  # worse
        (0.79, 0.79, 0.0, True),  # margin 0: as good is enough
        (0.90, 0.79, 0.2, False),  # a strict margin
    ],
)
def test_margin(challenger: float, champion: float, margin: float, promote: bool) -> None:
    decision = decide_promotion(challenger, champion, margin=margin)
    assert decision.promote is promote
    assert decision.metric == "roc_auc" and decision.margin == margin
    assert ("kept for inspection" in decision.reason) is (not promote)


def test_lower_is_better_metrics_are_compared_the_other_way() -> None:
    assert decide_promotion(0.10, 0.12, margin=0.01, metric="brier").promote
    assert not decide_promotion(0.12, 0.10, margin=0.0, metric="brier").promote


def test_undefined_values() -> None:
    assert not decide_promotion(math.nan, 0.7).promote
    first = decide_promotion(0.7, None, champion_name="rules (cold start)")
    assert first.promote and "rules" in first.reason
    with pytest.raises(ValueError):
        decide_promotion(0.8, 0.7, margin=-0.1)
    assert decide_promotion(0.8, 0.7).to_json()["champion"] == 0.7
