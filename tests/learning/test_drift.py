"""PSI by hand, reference bins, and the drift report's threshold."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from scoring.drift import (
    DriftReport,
    ErrorDriftDetector,
    FeatureReference,
    drift_report,
    profile_of,
    psi,
    reference_of,
)


def test_psi_matches_a_hand_computation() -> None:
    # Bins 50/50 -> 25/75: (0.25-0.5)*ln(0.25/0.5) + (0.75-0.5)*ln(0.75/0.5)
    expected = (0.25 - 0.5) * math.log(0.5) + (0.75 - 0.5) * math.log(1.5)
    assert psi([50, 50], [25, 75]) == pytest.approx(expected)
    assert psi([50, 50], [25, 75]) == pytest.approx(0.274653, abs=1e-6)
    # Three bins, proportions given directly.
    e, a = [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]
    by_hand = (0.3 - 0.2) * math.log(0.3 / 0.2) + 0 + (0.4 - 0.5) * math.log(0.4 / 0.5)
    assert psi(e, a) == pytest.approx(by_hand)
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0


def test_an_empty_bin_counts_as_a_hundredth_of_a_percent() -> None:
    value = psi([1, 0], [1, 1])
    by_hand = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert value == pytest.approx(by_hand)


def test_psi_rejects_mismatched_or_empty_inputs() -> None:
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        psi([0, 0], [1, 1])


def test_numeric_reference_uses_training_quantiles_and_a_missing_bin() -> None:
    ref = reference_of(list(range(1, 101)) + [None] * 25)
    assert ref.kind == "numeric"
    assert len(ref.edges) == 9 and len(ref.proportions) == 11
    assert ref.proportions[-1] == pytest.approx(0.2)  # 25 of 125 missing
    assert sum(ref.proportions) == pytest.approx(1.0)
    # Edges that coincide (a count that is mostly zero) merge into one bin.
    zeros = reference_of([0] * 90 + list(range(1, 11)))
    assert zeros.edges[0] == 0.0 and len(set(zeros.edges)) == len(zeros.edges)
    assert ref.psi(list(range(1, 101)) + [None] * 25) == pytest.approx(0.0)
    shifted = ref.psi(list(range(50, 150)))
    assert shifted > 0.2


def test_categorical_reference_has_other_and_missing_bins() -> None:
    ref = reference_of(["free"] * 30 + ["corporate"] * 70)
    assert ref.kind == "categorical" and ref.levels == ("corporate", "free")
    counts = ref.counts(["corporate", "free", "unheard-of", None])
    assert counts.tolist() == [1, 1, 1, 1]
    same = ref.psi(["free"] * 3 + ["corporate"] * 7)
    assert same == pytest.approx(0.0)
    # 30/70 -> 70/30: both directions contribute.
    by_hand = (0.7 - 0.3) * math.log(0.7 / 0.3) + (0.3 - 0.7) * math.log(0.3 / 0.7)
    assert ref.psi(["free"] * 70 + ["corporate"] * 30) == pytest.approx(by_hand, rel=1e-3)
    assert FeatureReference.from_json(ref.to_json()) == ref


def test_report_flags_what_crosses_the_threshold_worst_first() -> None:
    rng = np.random.default_rng(0)
    train = [{"pricing": int(x), "domain": "free" if rng.random() < 0.3 else "corporate"}
             for x in rng.poisson(2, 2000)]
    profile = profile_of(train, ["pricing", "domain"], scores=list(rng.beta(2, 5, 2000)))
    live_same = [{"pricing": int(x), "domain": "free" if rng.random() < 0.3 else "corporate"}
                 for x in rng.poisson(2, 500)]
    now = datetime(2025, 1, 1, tzinfo=UTC)
    calm = drift_report(profile, live_same, list(rng.beta(2, 5, 500)), checked_at=now)
    assert not calm.alert and calm.drifted == []
    assert max(calm.features.values()) < 0.1
    live_moved = [{"pricing": int(x), "domain": "free"} for x in rng.poisson(6, 500)]
    moved = drift_report(profile, live_moved, list(rng.beta(5, 2, 500)), checked_at=now, threshold=0.2)
    assert moved.alert
    assert set(moved.drifted) == {"pricing", "domain", "score"}
    assert moved.features[moved.drifted[0]] >= moved.features.get(moved.drifted[1], 0) or moved.drifted[0] == "score"
    as_json = moved.to_json()
    assert as_json["alert"] is True and as_json["threshold"] == 0.2 and as_json["drifted"] == moved.drifted


def test_too_few_live_rows_give_no_alert() -> None:
    profile = profile_of([{"x": i} for i in range(100)], ["x"])
    report = drift_report(profile, [{"x": 1000}], None, checked_at=datetime.now(UTC), min_rows=30)
    assert not report.alert and math.isnan(report.features["x"])
    assert isinstance(report, DriftReport)


def test_adwin_flags_a_jump_in_the_prequential_error() -> None:
    detector = ErrorDriftDetector()
    rng = np.random.default_rng(1)
    early = [detector.update(int(rng.random() < 0.9), 0.9) for _ in range(1000)]  # small errors
    late = [detector.update(int(rng.random() < 0.1), 0.9) for _ in range(1000)]  # the model is now wrong
    assert not any(early[:500])
    assert any(late)
