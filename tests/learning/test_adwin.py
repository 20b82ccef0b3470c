"""ADWIN on the prequential error as a retraining trigger and as a training window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from scoring.drift import ErrorDriftDetector, adwin_window_start

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def calibrated_stream(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) from a calibrated model: the error rate never changes."""
    p = rng.beta(1.5, 5, n)
    return (rng.random(n) < p).astype(int), p


def test_it_triggers_on_a_change_in_error_rate_and_the_window_moves_past_it() -> None:
    rng = np.random.default_rng(3)
    detector = ErrorDriftDetector()
    y, p = calibrated_stream(3000, rng)
    before = [detector.update(int(a), float(b)) for a, b in zip(y, p)]
    assert not any(before) and detector.width == 3000
    # The concept changes: the same scores now mean nothing (labels independent of p).
    p_after = rng.beta(1.5, 5, 3000)
    y_after = (rng.random(3000) < 0.5).astype(int)
    after = [detector.update(int(a), float(b)) for a, b in zip(y_after, p_after)]
    first = after.index(True)
    assert first < 500, first
    assert detector.detections >= 1
    # The window now holds only post-change labels (decision times: one a minute, in label order here).
    times = [T0 + timedelta(minutes=i) for i in range(6000)]
    start = adwin_window_start(times, detector.width)
    assert start is not None and start >= times[3000]
    assert detector.width < 3000


def test_few_false_alarms_on_a_stationary_stream() -> None:
    delta = 0.002
    alarms = checks = 0
    for seed in range(3):
        detector = ErrorDriftDetector(delta)
        y, p = calibrated_stream(20_000, np.random.default_rng(100 + seed))
        alarms += sum(detector.update(int(a), float(b)) for a, b in zip(y, p))
        checks += 20_000 // 32  # ADWIN looks for a cut every 32 updates (its clock)
    # delta bounds the false-alarm probability of each check; ADWIN's bound is conservative, so this holds easily.
    assert alarms <= delta * checks, (alarms, checks)


def test_window_start_is_the_oldest_decision_in_the_window() -> None:
    # Label order: a loss decided on day 1 matures after wins decided on days 5 and 6.
    times = [T0 + timedelta(days=d) for d in (0, 5, 1, 6, 3)]
    assert adwin_window_start(times, 3) == T0 + timedelta(days=1)
    assert adwin_window_start(times, 1) == T0 + timedelta(days=3)
    assert adwin_window_start(times, 99) == T0
    assert adwin_window_start(times, 0) is None
    assert adwin_window_start([], 5) is None
