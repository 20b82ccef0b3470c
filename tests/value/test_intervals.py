"""Rate differences (Newcombe) and bootstrap intervals against statsmodels and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from scoring.experiment import (
    bootstrap_difference,
    cluster_bootstrap_difference,
    excludes_zero,
    rate_difference,
    wilson_interval,
)

CASES = [(30, 100, 20, 110), (0, 50, 3, 40), (50, 50, 10, 60), (1, 7, 0, 9), (412, 1800, 37, 200), (5, 5, 0, 5)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_newcombe_matches_statsmodels(case: tuple[int, int, int, int], confidence: float) -> None:
    got = rate_difference(*case, confidence=confidence)
    low, high = confint_proportions_2indep(*case, method="newcomb", compare="diff", alpha=1 - confidence)
    assert got.estimate == pytest.approx(case[0] / case[1] - case[2] / case[3])
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize("successes,n", [(0, 10), (3, 10), (10, 10), (250, 1000)])
def test_wilson_matches_statsmodels(successes: int, n: int) -> None:
    got = wilson_interval(successes, n)
    assert (got.low, got.high) == pytest.approx(proportion_confint(successes, n, method="wilson"), abs=1e-12)


def test_newcombe_by_hand() -> None:
    """Newcombe (1998) table II, example (a): 56/70 vs 48/80 gives 0.0524 to 0.3339."""
    got = rate_difference(56, 70, 48, 80)
    assert (round(got.low, 4), round(got.high, 4)) == (0.0524, 0.3339)
    assert excludes_zero(got)


def test_bad_counts_raise() -> None:
    with pytest.raises(ValueError):
        rate_difference(11, 10, 1, 10)
    with pytest.raises(ValueError):
        rate_difference(0, 0, 1, 10)


def _samples(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.lognormal(3.0, 0.8, 400), rng.lognormal(3.3, 0.8, 300)


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_bootstrap_agrees_with_scipy_percentile_bootstrap(statistic: str) -> None:
    pilot, control = _samples()
    ours = bootstrap_difference(pilot, control, statistic=statistic, draws=4000, seed=1)
    fn = getattr(np, statistic)
    ref = stats.bootstrap((pilot, control), lambda x, y, axis: fn(x, axis=axis) - fn(y, axis=axis),
                          method="percentile", n_resamples=4000, rng=np.random.default_rng(2), vectorized=True)
    assert ours.estimate == pytest.approx(fn(pilot) - fn(control))
    width = ref.confidence_interval.high - ref.confidence_interval.low
    # Different random draws: the ends agree within a few percent of the width, not exactly.
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.06 * width)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.06 * width)


def test_bootstrap_of_means_is_close_to_welch() -> None:
    pilot, control = _samples()
    ours = bootstrap_difference(pilot, control, statistic="mean", draws=4000, seed=0)
    se = np.sqrt(pilot.var(ddof=1) / pilot.size + control.var(ddof=1) / control.size)
    d = pilot.mean() - control.mean()
    assert ours.low == pytest.approx(d - 1.96 * se, abs=0.1 * 3.92 * se)
    assert ours.high == pytest.approx(d + 1.96 * se, abs=0.1 * 3.92 * se)


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    pilot, control = _samples()
    assert bootstrap_difference(pilot, control, seed=5) == bootstrap_difference(pilot, control, seed=5)
    assert bootstrap_difference(pilot, control, seed=5) != bootstrap_difference(pilot, control, seed=6)


def test_cluster_bootstrap_of_singleton_clusters_is_the_lead_bootstrap() -> None:
    pilot, control = _samples()
    lead = bootstrap_difference(pilot, control, statistic="median", draws=3000, seed=0)
    cluster = cluster_bootstrap_difference(pilot, np.arange(pilot.size), control, np.arange(control.size),
                                           statistic="median", draws=3000, seed=1)
    width = lead.high - lead.low
    assert cluster.estimate == lead.estimate
    assert (cluster.low, cluster.high) == pytest.approx((lead.low, lead.high), abs=0.08 * width)


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_cluster_bootstrap_of_equal_identical_clusters_is_the_bootstrap_of_cluster_values(statistic: str) -> None:
    """Clusters of 5 identical leads: resampling clusters is resampling the cluster values (scipy's bootstrap)."""
    rng = np.random.default_rng(4)
    pv, cv = rng.normal(10, 3, 41), rng.normal(12, 3, 31)
    ours = cluster_bootstrap_difference(np.repeat(pv, 5), np.repeat(np.arange(41), 5), np.repeat(cv, 5),
                                        np.repeat(np.arange(31), 5), statistic=statistic, draws=4000, seed=0)
    fn = getattr(np, statistic)
    ref = stats.bootstrap((pv, cv), lambda x, y, axis: fn(x, axis=axis) - fn(y, axis=axis), method="percentile",
                          n_resamples=4000, rng=np.random.default_rng(9), vectorized=True).confidence_interval
    width = ref.high - ref.low
    assert (ours.low, ours.high) == pytest.approx((ref.low, ref.high), abs=0.08 * width)


def test_cluster_bootstrap_is_wider_when_owners_differ() -> None:
    """Leads of one owner share the owner's speed: lead resampling understates the uncertainty."""
    rng = np.random.default_rng(7)

    def arm(owners: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        owner_effect = rng.normal(0, 10, owners)
        keys = np.repeat(np.arange(owners), 40)
        return 30 + shift + owner_effect[keys] + rng.normal(0, 3, keys.size), keys

    (pv, pk), (cv, ck) = arm(12, -5), arm(12, 0)
    lead = bootstrap_difference(pv, cv, statistic="mean", draws=2000)
    cluster = cluster_bootstrap_difference(pv, pk, cv, ck, statistic="mean", draws=2000)
    assert cluster.high - cluster.low > 3 * (lead.high - lead.low)


def test_cluster_keys_must_match_values() -> None:
    with pytest.raises(ValueError):
        cluster_bootstrap_difference([1.0, 2.0], ["a"], [1.0], ["b"])
