"""Probability calibration stored as plain numbers (never pickled).

Platt scaling maps the booster's raw margin m to 1 / (1 + exp(-(a*m + b))); isotonic regression is
stored as its breakpoints (x thresholds, y values) and applied by linear interpolation. Both are
fitted on rows the booster did not train on (the validation split), so they correct the booster's
over- or under-confidence instead of memorising it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Method = Literal["platt", "isotonic", "none"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=float)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


@dataclass(frozen=True)
class Calibrator:
    """A fitted margin -> probability map."""

    method: Method
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw booster margins."""
        margin = np.asarray(margin, dtype=float)
        if self.method == "isotonic":
            return np.interp(margin, np.asarray(self.x), np.asarray(self.y))
        if self.method == "platt":
            return sigmoid(self.a * margin + self.b)
        return sigmoid(margin)

    def to_json(self) -> dict[str, Any]:
        """Plain-number form for the bundle metadata."""
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": self.method, "a": self.a, "b": self.b}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibrator:
        """Inverse of `to_json`."""
        method = data["method"]
        if method == "isotonic":
            return cls("isotonic", x=tuple(float(v) for v in data["x"]), y=tuple(float(v) for v in data["y"]))
        return cls(method, a=float(data.get("a", 1.0)), b=float(data.get("b", 0.0)))


def fit_calibrator(margin: np.ndarray, y: np.ndarray, method: Method = "platt",
                   sample_weight: np.ndarray | None = None) -> Calibrator:
    """Fit a calibrator on held-out margins and labels (optionally weighted per row)."""
    # scikit-learn is imported here, not at module level: scoring processes load calibrators but never
    # fit them, and the import costs memory and start-up time.
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    margin = np.asarray(margin, dtype=float)
    y = np.asarray(y, dtype=int)
    if method == "none" or len(np.unique(y)) < 2:
        return Calibrator("none")
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y, sample_weight=sample_weight)
        return Calibrator(
            "isotonic",
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in iso.y_thresholds_),
        )
    # Nearly unregularised: two parameters on hundreds of rows don't need a prior.
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(margin[:, None], y, sample_weight=sample_weight)
    return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
