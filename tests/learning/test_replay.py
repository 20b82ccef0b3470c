"""Experience-Delayed Replay weights: the formula's properties, the replay order, and calibration when trained with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from scoring.metrics import expected_calibration_error
from scoring.replay import edr_weights, replay_order
from scoring.training import TrainingError, TrainOptions, run_experiment


def labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Delays, errors and outcomes shaped like matured labels: wins arrive in days, losses after the window."""
    rng = np.random.default_rng(seed)
    won = rng.random(n) < 0.2
    delays = np.where(won, rng.uniform(0, 20, n), 30 + rng.uniform(0, 10, n))
    errors = rng.beta(2, 5, n)
    return delays, errors, won


def test_weights_fall_with_delay_and_rise_with_error() -> None:
    delays = np.array([0.0, 5.0, 10.0, 40.0, 0.0, 0.0, 0.0])
    errors = np.array([0.5, 0.5, 0.5, 0.5, 0.1, 0.9, 0.0])
    w = edr_weights(delays, errors, [True] * 7)
    assert w[0] > w[1] > w[2] > w[3]
    assert w[5] > w[0] > w[4] > w[6]
    # Two hand-computed raw weights (floor 0.2, half-life 14 days): r = 0.2 + 0.8 * 2**(-d/14) * e.
    raw = 0.2 + 0.8 * np.exp2(-delays / 14.0) * errors
    assert w == pytest.approx(raw / raw.mean())


@pytest.mark.parametrize("kw", [{}, {"half_life_days": 3.0, "error_power": 2.0, "floor": 0.05}, {"floor": 1.0}])
def test_each_class_averages_one_so_the_base_rate_is_unchanged(kw: dict[str, float]) -> None:
    delays, errors, won = labels(5000, seed=1)
    w = edr_weights(delays, errors, won, **kw)
    assert np.all(np.isfinite(w))
    assert w[won].mean() == pytest.approx(1.0) and w[~won].mean() == pytest.approx(1.0)
    assert w[won].sum() / w.sum() == pytest.approx(won.mean())
    floor = kw.get("floor", 0.2)
    assert w.min() >= floor - 1e-12
    # Without the per-class normalisation, quick wins would outweigh slow losses.
    raw = floor + (1 - floor) * np.exp2(-delays / kw.get("half_life_days", 14.0)) * errors ** kw.get("error_power", 1.0)
    if floor < 1.0:
        assert raw[won].sum() / raw.sum() > won.mean() + 0.02


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        edr_weights([1.0, 2.0], [0.1], [True, False])
    with pytest.raises(ValueError):
        edr_weights([-1.0], [0.1], [True])
    with pytest.raises(ValueError):
        edr_weights([1.0], [1.5], [True])
    with pytest.raises(ValueError):
        edr_weights([float("nan")], [0.5], [True])
    with pytest.raises(ValueError):
        edr_weights([1.0], [0.5], [True], floor=0.0)
    assert edr_weights([], [], []).size == 0
    # One class only: its mean is 1 all the same.
    assert edr_weights([1.0, 9.0], [0.2, 0.4], [False, False]).mean() == pytest.approx(1.0)


def test_replay_order_is_a_weighted_permutation() -> None:
    delays, errors, won = labels(2000, seed=2)
    order = replay_order(delays, errors, won, seed=3)
    assert sorted(order) == list(range(2000))
    assert order == replay_order(delays, errors, won, seed=3)
    assert order != replay_order(delays, errors, won, seed=4)
    # Weighted sampling without replacement: the first draw picks label i with probability w_i / sum(w).
    d, e, y = [0.0, 10.0, 40.0], [0.9, 0.5, 0.1], [True, True, True]
    w = edr_weights(d, e, y)
    first = np.bincount([replay_order(d, e, y, seed=s)[0] for s in range(4000)], minlength=3) / 4000
    assert first == pytest.approx(w / w.sum(), abs=0.03)
    assert w[0] > w[1] > w[2]
    assert replay_order([], [], []) == []


def funnel_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A lead table (time-ordered) plus EDR weights from its label delays and a live model's errors."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    x1, x2 = rng.normal(size=n), rng.poisson(2, n)
    segment = rng.choice(["a", "b", "c"], n)
    logit = -1.6 + 1.1 * x1 + 0.3 * (x2 - 2) + np.select([segment == "a", segment == "b"], [0.6, -0.3], 0.0)
    p_true = 1 / (1 + np.exp(-logit))
    won = rng.random(n) < p_true
    frame = pd.DataFrame({"lead_id": [f"l{i}" for i in range(n)],
                          "as_of": [(t0 + timedelta(hours=i)).isoformat() for i in range(n)],
                          "x1": x1, "x2": x2, "segment": segment, "won": won.astype(int)})
    delays = np.where(won, rng.uniform(0, 15, n), 30 + rng.uniform(0, 10, n))
    live = np.clip(p_true + rng.normal(0, 0.1, n), 0.01, 0.99)  # a decent but imperfect live model
    return frame, edr_weights(delays, np.abs(won - live), won)


def test_xgboost_trained_with_edr_weights_stays_calibrated() -> None:
    frame, w = funnel_frame(10_000, seed=5)
    options = TrainOptions(label="won", id_column="lead_id", time_column="as_of")
    weighted = run_experiment(frame, options, sample_weight=w)
    holdout = frame.iloc[-len(weighted.test_probabilities):]
    ece = expected_calibration_error(holdout["won"].to_numpy(), weighted.test_probabilities)
    assert ece < 0.03, ece
    assert weighted.metrics["roc_auc"] > 0.75
    assert weighted.bundle.metadata["training"]["weighted"] is True
    assert abs(weighted.test_probabilities.mean() - holdout["won"].mean()) < 0.02


def test_weights_reach_the_booster_and_the_calibration() -> None:
    frame, _ = funnel_frame(3000, seed=6)
    options = TrainOptions(label="won", id_column="lead_id", time_column="as_of")
    plain = run_experiment(frame, options)
    # Positives counted three times: a model that saw the weights predicts more conversion.
    tilted = run_experiment(frame, options, sample_weight=np.where(frame["won"] == 1, 3.0, 1.0))
    assert tilted.test_probabilities.mean() > plain.test_probabilities.mean() + 0.05
    assert plain.bundle.metadata["training"]["weighted"] is False
    with pytest.raises(TrainingError, match="sample_weight"):
        run_experiment(frame, options, sample_weight=np.ones(10))
