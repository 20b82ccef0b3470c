"""The points model used for cold start and as a baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.rules import COLD_START_RULES, PointsModel, Rule, derive_scorecard, use_trained_model


def test_cold_start_rules_score_and_explain() -> None:
    hot = {"demo_requests_30d": 1, "pricing_views_7d": 4, "seniority": "vp", "email_domain_type": "corporate",
           "days_since_last_activity": 0.5}
    value, reasons = COLD_START_RULES.score_row(hot)
    assert value == 20 + 30 + 15 + 10 + 10
    assert reasons[0] == "+ requested a demo"
    cold = {"email_domain_type": "free", "days_since_last_activity": 45.0, "seniority": "student"}
    value, reasons = COLD_START_RULES.score_row(cold)
    assert value == 0  # 20 - 10 - 15 - 15, clamped
    assert "- free e-mail domain" in reasons


def test_missing_features_fire_nothing() -> None:
    assert COLD_START_RULES.score_row({}) == (20, ("= no scoring rule applies: base score 20",))


def test_vectorised_scores_match_row_scores() -> None:
    model = PointsModel(rules=(Rule("a", "gte", 2, 10, "a"), Rule("b", "in", ("x", "y"), -5, "b"),
                               Rule("c", "missing", None, 3, "c")), base=50)
    frame = pd.DataFrame({"a": [1, 2, None], "b": ["x", "z", None], "c": [1.0, None, None]})
    rows = [model.score_row({k: (None if pd.isna(v) else v) for k, v in r.items()})[0] for r in frame.to_dict("records")]
    assert model.score_frame(frame).tolist() == rows == [45, 63, 53]
    assert PointsModel.from_json(model.to_json()) == model


def test_use_trained_model_needs_enough_outcomes() -> None:
    assert not use_trained_model(499, 100)
    assert not use_trained_model(5000, 49)
    assert use_trained_model(500, 50)
    assert use_trained_model(40, 10, min_outcomes=40, min_positives=10)


def test_derived_scorecard_rewards_converting_levels() -> None:
    frame = pd.DataFrame({"src": ["ref"] * 50 + ["ads"] * 50})
    y = np.array([1] * 40 + [0] * 10 + [1] * 10 + [0] * 40)
    card = derive_scorecard(frame, y, {"src": "categorical"})
    points = {r.value: r.points for r in card.rules}
    assert points["ref"] > 0 > points["ads"]
