"""Kaplan-Meier for censored response times against statsmodels' SurvfuncRight and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.duration.survfunc import SurvfuncRight

from scoring.experiment import (
    kaplan_meier,
    km_median,
    km_median_difference,
    km_median_interval,
    share_touched_within,
    survival_at,
)


def _response_times(seed: int, n: int = 300, scale: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Minutes to first touch (exponential), censored by a report time; rounded so times tie."""
    rng = np.random.default_rng(seed)
    touch, report = rng.exponential(scale, n), rng.exponential(1.5 * scale, n)
    return np.minimum(touch, report).round(1), touch <= report


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curve_and_greenwood_match_statsmodels(seed: int) -> None:
    t, e = _response_times(seed)
    ours, ref = kaplan_meier(t, e), SurvfuncRight(t, e.astype(int))
    assert np.array_equal(ours.times, ref.surv_times)
    assert np.allclose(ours.survival, ref.surv_prob, rtol=0, atol=1e-12)
    with np.errstate(invalid="ignore"):  # 0 * inf where every remaining lead was touched: nan in both
        assert np.allclose(ours.survival * np.sqrt(ours.greenwood), ref.surv_prob_se, rtol=1e-10, equal_nan=True)
    assert np.array_equal(ours.at_risk, ref.n_risk) and np.array_equal(ours.events, ref.n_events)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # statsmodels takes log(0) where the curve reaches 0
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_median_and_brookmeyer_crowley_match_statsmodels(seed: int) -> None:
    t, e = _response_times(seed)
    curve, ref = kaplan_meier(t, e), SurvfuncRight(t, e.astype(int))
    assert not np.any(curve.survival == 0.5)  # statsmodels takes S < 0.5 strictly; the same when no step is 0.5
    got = km_median_interval(curve)
    assert got.estimate == ref.quantile(0.5)
    assert (got.low, got.high) == ref.quantile_ci(0.5, alpha=0.05, method="cloglog")


def test_by_hand() -> None:
    """Six leads: touched at 2, 3, 3 and 8 min; still untouched at 4 and 9 min."""
    curve = kaplan_meier([2, 3, 3, 4, 8, 9], [1, 1, 1, 0, 1, 0])
    assert curve.times.tolist() == [2, 3, 8]
    assert curve.at_risk.tolist() == [6, 5, 2]
    s = [5 / 6, 5 / 6 * 3 / 5, 5 / 6 * 3 / 5 * 1 / 2]
    assert curve.survival == pytest.approx(s)
    assert curve.greenwood == pytest.approx(np.cumsum([1 / (6 * 5), 2 / (5 * 3), 1 / (2 * 1)]))
    assert survival_at(curve, 1.9) == 1.0 and survival_at(curve, 3) == pytest.approx(0.5)
    assert survival_at(curve, 7.99) == pytest.approx(0.5) and survival_at(curve, 100) == pytest.approx(0.25)
    # S reaches exactly 0.5 at 3 min: the median is 3 (the first t with S(t) <= 0.5).
    assert km_median(curve) == 3
    # Share touched within 5 min: 1 - S(5) = 0.5; log-log interval by hand.
    w = 1.959963984540054 * math.sqrt(1 / 30 + 2 / 15) / abs(math.log(0.5))
    got = share_touched_within(curve, 5)
    assert got.estimate == pytest.approx(0.5)
    assert (got.low, got.high) == pytest.approx((1 - 0.5 ** math.exp(-w), 1 - 0.5 ** math.exp(w)))


def test_share_interval_is_the_delta_method_on_log_minus_log() -> None:
    """g = log(-log S): the interval is g(S) ± z · g'(S) · se(S), with statsmodels' Greenwood se."""
    t, e = _response_times(5)
    ref = SurvfuncRight(t, e.astype(int))
    got = share_touched_within(kaplan_meier(t, e), 5.0)
    i = np.searchsorted(ref.surv_times, 5.0, side="right") - 1
    s, se = ref.surv_prob[i], ref.surv_prob_se[i]
    half = 1.959963984540054 * se / (s * abs(math.log(s)))
    g = math.log(-math.log(s))
    assert got.estimate == pytest.approx(1 - s)
    assert got.low == pytest.approx(1 - math.exp(-math.exp(g - half)))
    assert got.high == pytest.approx(1 - math.exp(-math.exp(g + half)))


def test_share_within_5_minutes_covers_the_truth_about_95_percent() -> None:
    truth = 1 - math.exp(-5 / 10)
    hits = 0
    for seed in range(400):
        got = share_touched_within(kaplan_meier(*_response_times(1000 + seed, n=150)), 5.0)
        hits += got.low <= truth <= got.high
    assert 0.92 <= hits / 400 <= 0.98


def test_median_not_reached_is_infinite() -> None:
    curve = kaplan_meier([1, 5, 6, 7, 8], [1, 0, 0, 0, 0])
    assert km_median(curve) == math.inf
    assert km_median_interval(curve).high == math.inf


def test_median_difference_without_censoring_is_the_difference_of_lower_medians() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.exponential(10, 200), rng.exponential(15, 201)
    got = km_median_difference(a, np.ones(200, bool), b, np.ones(201, bool), draws=300)
    assert got.estimate == pytest.approx(np.sort(a)[99] - np.sort(b)[100])


def test_median_difference_interval_covers_a_known_shift() -> None:
    """Exponential touch times with means 10 and 15 min: the true median difference is -5 ln 2 min."""
    tp, ep = _response_times(11, n=600, scale=10)
    tc, ec = _response_times(12, n=600, scale=15)
    got = km_median_difference(tp, ep, tc, ec, draws=500, seed=3)
    assert got.low <= -5 * math.log(2) <= got.high
    assert got.high < 0  # 600 leads an arm see a 3.5-minute difference
    assert got == km_median_difference(tp, ep, tc, ec, draws=500, seed=3)


def test_median_difference_is_unbounded_when_a_median_may_not_be_reached() -> None:
    """A control arm touched barely half the time: in many resamples its median is never reached."""
    t = np.arange(1.0, 41.0)
    e = np.r_[np.ones(21, bool), np.zeros(19, bool)]
    got = km_median_difference(t, np.ones(40, bool), t, e, draws=300)
    assert got.low == -math.inf


def test_share_is_certain_once_everyone_was_touched() -> None:
    curve = kaplan_meier([1, 2, 3], [1, 1, 1])
    assert (share_touched_within(curve, 0.5).estimate, share_touched_within(curve, 5).low) == (0.0, 1.0)
