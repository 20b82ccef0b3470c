"""Minimum detectable effect and leads needed against statsmodels' NormalIndPower."""

from __future__ import annotations

import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from scoring.experiment import (
    leads_needed,
    minimum_detectable_difference,
    minimum_detectable_effect,
    more_leads_needed,
)


@pytest.mark.parametrize("n_pilot,n_control,baseline", [(1800, 200, 0.2), (500, 500, 0.05), (90, 10, 0.5)])
def test_mde_has_the_stated_power_in_statsmodels(n_pilot: int, n_control: int, baseline: float) -> None:
    mde = minimum_detectable_effect(n_pilot, n_control, baseline)
    h = proportion_effectsize(baseline + mde, baseline)
    power = NormalIndPower().power(h, nobs1=n_pilot, alpha=0.05, ratio=n_control / n_pilot)
    assert power == pytest.approx(0.8, abs=1e-4)
    solved = NormalIndPower().solve_power(None, nobs1=n_pilot, alpha=0.05, power=0.8, ratio=n_control / n_pilot)
    assert h == pytest.approx(solved, rel=1e-4)


def test_mde_shrinks_with_the_square_root_of_n() -> None:
    a = minimum_detectable_effect(1000, 1000, 0.2)
    b = minimum_detectable_effect(4000, 4000, 0.2)
    assert a / b == pytest.approx(2, rel=0.05)


@pytest.mark.parametrize("baseline,effect,share", [(0.2, 0.05, 0.1), (0.2, 0.05, 0.5), (0.1, 0.02, 0.3)])
def test_leads_needed_matches_statsmodels(baseline: float, effect: float, share: float) -> None:
    h = proportion_effectsize(baseline + effect, baseline)
    ratio = share / (1 - share)  # control per pilot lead
    nobs1 = NormalIndPower().solve_power(h, nobs1=None, alpha=0.05, power=0.8, ratio=ratio)
    assert leads_needed(baseline, effect, share) == pytest.approx(nobs1 * (1 + ratio), rel=1e-3)


def test_more_leads_needed_at_the_current_split() -> None:
    total = leads_needed(0.2, 0.05, 0.1)
    assert more_leads_needed(900, 100, 0.2, 0.05) == total - 1000
    assert more_leads_needed(total, total, 0.2, 0.05) == 0


def test_a_textbook_sample_size() -> None:
    """20% vs 25%, equal arms, alpha 0.05, power 0.8: about 1,090 a group on the arcsine scale (2,180 in all)."""
    assert 2170 <= leads_needed(0.20, 0.05, 0.5) <= 2190


def test_mdd_for_means_matches_statsmodels() -> None:
    d = NormalIndPower().solve_power(None, nobs1=300, alpha=0.05, power=0.8, ratio=0.5)
    assert minimum_detectable_difference(300, 150, sd=40.0) == pytest.approx(d * 40.0, rel=1e-4)


def test_impossible_rates_raise() -> None:
    with pytest.raises(ValueError):
        leads_needed(0.98, 0.05, 0.5)
    with pytest.raises(ValueError):
        leads_needed(0.2, 0.05, 0.0)
