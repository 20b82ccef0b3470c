"""Metrics and calibration against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scoring.calibration import Calibrator, fit_calibrator
from scoring.metrics import evaluate, expected_calibration_error, lift_at


def test_ece_hand_computed() -> None:
    # Bin [0.1,0.2): p=0.1,0.1 with y=0,1 -> |0.5-0.1| = 0.4, weight 2/5.
    # Bin [0.9,1.0]: p=0.9,0.9,1.0 with y=1,1,1 -> |1-0.9333| = 0.0667, weight 3/5.
    y = np.array([0, 1, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.9, 0.9, 1.0])
    expected = 2 / 5 * 0.4 + 3 / 5 * abs(1 - (0.9 + 0.9 + 1.0) / 3)
    assert expected_calibration_error(y, p) == pytest.approx(expected)


def test_ece_is_zero_when_rates_match_probabilities() -> None:
    y = np.array([0, 1, 0, 1, 1, 1, 1, 0])
    p = np.array([0.5, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75])
    assert expected_calibration_error(y, p) == pytest.approx(0.0)


def test_lift_at_top_decile_hand_computed() -> None:
    # 20 rows, 5 positives (rate 0.25); top 10% = 2 rows, both positive -> lift 4.0.
    y = np.array([1, 1] + [1, 1, 1] + [0] * 15)
    p = np.linspace(1, 0, 20)
    assert lift_at(y, p, 0.1) == pytest.approx(4.0)
    # 4 positives (rate 0.2); top 2 rows hold one -> precision 0.5 -> lift 2.5.
    y2 = np.array([1, 0, 1, 1, 1] + [0] * 15)
    assert lift_at(y2, p, 0.1) == pytest.approx(2.5)


def test_evaluate_reports_all_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = evaluate(y, p)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert set(m) == {"roc_auc", "pr_auc", "brier", "ece", "lift_at_10"}


def test_platt_calibration_fixes_an_overconfident_margin() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    margin = 3.0 * true_logit + 1.0  # overconfident and shifted
    cal = fit_calibrator(margin, y, "platt")
    assert cal.a == pytest.approx(1 / 3, abs=0.05)
    assert cal.b == pytest.approx(-1 / 3, abs=0.1)
    raw_ece = expected_calibration_error(y, 1 / (1 + np.exp(-margin)))
    assert expected_calibration_error(y, cal.apply(margin)) < raw_ece / 2
    again = Calibrator.from_json(cal.to_json())
    np.testing.assert_array_equal(again.apply(margin), cal.apply(margin))


def test_isotonic_calibrator_is_plain_numbers() -> None:
    margin = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    y = np.array([0, 0, 1, 0, 1, 1])
    cal = fit_calibrator(margin, y, "isotonic")
    data = cal.to_json()
    assert data["method"] == "isotonic"
    assert all(isinstance(v, float) for v in data["x"] + data["y"])
    p = Calibrator.from_json(data).apply(np.array([-5.0, 10.0]))
    assert p[0] == 0.0 and p[1] == 1.0
    assert not math.isnan(float(cal.apply(np.array([0.5]))[0]))
