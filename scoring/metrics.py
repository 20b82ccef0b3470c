"""Model-quality metrics: ROC AUC, PR AUC, Brier score, ECE and top-decile lift."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

METRIC_NAMES = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10")


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE over `bins` equal-width probability bins: sum of |mean(y) - mean(p)| weighted by bin size.

    A probability of exactly 1.0 falls in the last bin; empty bins contribute nothing.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if y.size == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(total)


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of labels `y` (0/1) under probabilities `p` (clipped to [eps, 1 - eps], as
    scikit-learn's log_loss does); NaN for no rows."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    if y.size == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def lift_at(y: np.ndarray, p: np.ndarray, fraction: float = 0.1) -> float:
    """Conversion rate among the top `fraction` of scores divided by the overall rate.

    The top group holds ceil(fraction * n) rows; ties are broken by original order (stable sort),
    so the number is deterministic.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if y.size == 0 or y.mean() == 0:
        return float("nan")
    n_top = max(1, math.ceil(fraction * y.size - 1e-9))
    order = np.argsort(-p, kind="stable")[:n_top]
    return float(y[order].mean() / y.mean())


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """All report metrics for labels `y` (0/1) and probabilities `p`."""
    # Imported here: scikit-learn costs ~120 MB and a second of start-up, and the web process (the admin's
    # charts read this module) never evaluates a model.
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p),
        "lift_at_10": lift_at(y, p, 0.1),
    }


def mean_metrics(runs: list[Mapping[str, float]]) -> dict[str, float]:
    """Average each metric over several runs (e.g. seeds)."""
    return {k: float(np.mean([r[k] for r in runs])) for k in METRIC_NAMES if runs and k in runs[0]}
