"""Anytime-valid inference: weekly looks at a confidence sequence do not inflate false "conclusive" calls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scoring.experiment import (
    Interval,
    anytime_interval,
    conclusive,
    confidence_sequence,
    excludes_zero,
    mixing_parameter,
    rate_difference,
)

LEADS = 2000
LOOKS = np.arange(200, LEADS + 1, 200)  # ten weekly looks at a 2,000-lead pilot


def test_boundary_by_hand() -> None:
    """Equal arms of constant outcomes 1 (pilot) and 0 (control), alternating: the half-width at t from the formula."""
    y = np.tile([1.0, 0.0], 50)
    a = np.tile([True, False], 50)
    est, low, high = confidence_sequence(y, a, 0.5, horizon=100, burn_in=5)
    rho2 = (-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 100
    assert mixing_parameter(100) ** 2 == pytest.approx(rho2)
    t = 100
    phi = np.empty(t)  # the AIPW terms by hand: arm means of earlier leads are 1 and 0 once both arms were seen
    phi[0] = 0 + 1 * (1 - 0) / 0.5  # first lead: no earlier means (0, 0)
    phi[1] = (1 - 0) - (0 - 0) / 0.5
    phi[2:] = 1.0
    sd = phi.std()
    half = sd * math.sqrt(2 * (t * rho2 + 1) / (t * t * rho2) * math.log(math.sqrt(t * rho2 + 1) / 0.05))
    assert est[-1] == pytest.approx(phi.mean())
    assert (low[-1], high[-1]) == pytest.approx((phi.mean() - half, phi.mean() + half))
    assert np.isinf(low[:9]).all()  # burn-in: 5 leads in each arm first


def test_the_estimate_is_close_to_the_difference_in_means() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(LEADS) < 0.9
    y = rng.lognormal(3 - 0.3 * a, 0.7)
    got = anytime_interval(y, a, 0.9, horizon=LEADS)
    plain = y[a].mean() - y[~a].mean()
    assert got.estimate == pytest.approx(plain, abs=0.15 * abs(plain))
    assert got.low < plain < got.high


def _null_pilots(pilots: int, share: float, seed: int) -> tuple[float, float, float, float]:
    """False-conclusive rates over simulated A/A pilots (win rate 20% in both arms), looked at weekly."""
    rng = np.random.default_rng(seed)
    naive = anytime = rule = horizon_only = 0
    idx = LOOKS - 1
    for _ in range(pilots):
        a = rng.random(LEADS) < share
        y = (rng.random(LEADS) < 0.2).astype(float)
        _, low, high = confidence_sequence(y, a, share, horizon=LEADS)
        fixed = [rate_difference(int(y[:k][a[:k]].sum()), int(a[:k].sum()), int(y[:k][~a[:k]].sum()),
                                 int((~a[:k]).sum())) for k in LOOKS]
        crossed = [Interval(0.0, lo, hi) for lo, hi in zip(low[idx], high[idx])]
        naive += any(excludes_zero(f) for f in fixed)
        anytime += any(excludes_zero(c) for c in crossed)
        rule += any(conclusive(f, c, int(k), LEADS) for f, c, k in zip(fixed, crossed, LOOKS))
        horizon_only += excludes_zero(fixed[-1])
    return naive / pilots, anytime / pilots, rule / pilots, horizon_only / pilots


@pytest.mark.parametrize("share", [0.5, 0.9])
def test_weekly_looks_do_not_inflate_false_conclusive_calls(share: float) -> None:
    naive, anytime, rule, horizon_only = _null_pilots(1500, share, seed=int(share * 10))
    print(f"pilot share {share}: naive weekly fixed-horizon CIs {naive:.3f}, anytime-valid {anytime:.3f}, "
          f"conclusive() {rule:.3f}, fixed CI at the horizon only {horizon_only:.3f}")
    assert naive > 0.10  # ten looks at a 95% CI: about one A/A pilot in five is called
    assert anytime <= 0.05
    # conclusive() = horizon CI or anytime: at most 0.05 + 0.05 by the union bound; in practice the paths that
    # cross the wide anytime boundary mostly end outside the horizon CI too. 1,500 pilots: sd of a rate ~0.006.
    assert rule <= 0.07
    assert rule <= horizon_only + anytime


def test_whole_path_coverage_under_a_real_difference() -> None:
    """Skewed minutes, 10% control: the sequence covers the true difference at every look in >= ~95% of pilots."""
    rng = np.random.default_rng(42)
    truth = math.exp(3.0 + 0.7**2 / 2) * (math.exp(-0.3) - 1)  # lognormal means, pilot scaled by e^-0.3
    covered = 0
    for _ in range(600):
        a = rng.random(LEADS) < 0.9
        y = rng.lognormal(3.0 - 0.3 * a, 0.7)
        _, low, high = confidence_sequence(y, a, 0.9, horizon=LEADS)
        covered += bool(np.all((low[LOOKS - 1] <= truth) & (truth <= high[LOOKS - 1])))
    assert covered / 600 >= 0.93


def test_a_real_effect_is_found_before_the_horizon() -> None:
    """Win rate 20% vs 30% with equal arms: the sequence excludes zero well before 2,000 leads."""
    rng = np.random.default_rng(3)
    a = rng.random(LEADS) < 0.5
    y = (rng.random(LEADS) < np.where(a, 0.3, 0.2)).astype(float)
    _, low, _ = confidence_sequence(y, a, 0.5, horizon=LEADS)
    first = int(np.argmax(low > 0))
    assert low[first] > 0 and first < 1500


def test_conclusive_rule() -> None:
    above, across = Interval(0.03, 0.01, 0.05), Interval(0.03, -0.01, 0.07)
    assert not conclusive(above, across, n=800, horizon=2000)  # an early fixed CI is not enough
    assert conclusive(above, across, n=2000, horizon=2000)
    assert conclusive(across, above, n=800, horizon=2000)
    assert not conclusive(across, across, n=2500, horizon=2000)
