"""Prequential (test-then-train) evaluation: each outcome is first scored, then learned from.

When a lead's label becomes known, the score it gets here is the one from the model that was live at
the lead's *decision time* (see scoring.labels): a model that could not have seen this label. Only
after that is the label released into the training pool the next retraining reads. Over time the
records give an honest running estimate of live quality; `rolling_metrics` turns them into rolling
ROC AUC, log loss and calibration (ECE, Brier, mean score vs conversion rate) per time window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from scoring.labels import LabelledLead
from scoring.metrics import expected_calibration_error, log_loss


@dataclass(frozen=True)
class Prediction:
    """What the live model said about a lead at its decision time."""

    probability: float
    model_version: str


@dataclass(frozen=True)
class PrequentialRecord:
    """One tested outcome: the live model's probability at decision time, and the label that came later."""

    lead_id: str
    decision_time: datetime
    labelled_at: datetime
    probability: float
    won: bool
    model_version: str


class PrequentialEvaluator:
    """Test-then-train: `observe` scores a label with `predict` first, then adds it to `training`.

    `predict(label)` must answer with the model that was live at `label.decision_time` (or None when
    no score exists); `training` is the pool retraining may read, in the order labels were released.
    """

    def __init__(self, predict: Callable[[LabelledLead], Prediction | None]) -> None:
        self.predict = predict
        self.records: list[PrequentialRecord] = []
        self.training: list[LabelledLead] = []
        self.untested = 0  # labels for which no live score existed (released for training all the same)

    def observe(self, label: LabelledLead) -> PrequentialRecord | None:
        """Score one newly labelled lead, then release it for training."""
        prediction = self.predict(label)  # test first: the label is not in `training` yet
        record = None
        if prediction is not None:
            record = PrequentialRecord(label.lead_id, label.decision_time, label.labelled_at,
                                       float(prediction.probability), label.won, prediction.model_version)
            self.records.append(record)
        else:
            self.untested += 1
        self.training.append(label)  # ... then train
        return record

    def observe_all(self, labels: Iterable[LabelledLead]) -> list[PrequentialRecord]:
        """Observe labels in the order they became known (labelled_at); returns the new records."""
        out = []
        for label in sorted(labels, key=lambda x: (x.labelled_at, x.lead_id)):
            record = self.observe(label)
            if record is not None:
                out.append(record)
        return out


@dataclass(frozen=True)
class WindowMetrics:
    """Quality of the scores given in one time window."""

    start: datetime
    end: datetime
    rows: int
    positives: int
    roc_auc: float
    brier: float
    ece: float
    mean_probability: float
    conversion_rate: float
    log_loss: float = float("nan")

    def to_json(self) -> dict[str, object]:
        """Plain-JSON form (NaN as None)."""
        def num(v: float) -> float | None:
            return round(v, 6) if math.isfinite(v) else None

        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "rows": self.rows,
                "positives": self.positives, "roc_auc": num(self.roc_auc), "brier": num(self.brier),
                "ece": num(self.ece), "mean_probability": num(self.mean_probability),
                "conversion_rate": num(self.conversion_rate), "log_loss": num(self.log_loss)}


def auc(y: Sequence[int], p: Sequence[float]) -> float:
    """ROC AUC (ties count half), NaN unless both classes are present."""
    y_arr = np.asarray(y, dtype=int)
    p_arr = np.asarray(p, dtype=float)
    n_pos = int(y_arr.sum())
    n_neg = len(y_arr) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(p_arr)
    return float((ranks[y_arr == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def window_metrics(records: Sequence[PrequentialRecord], start: datetime, end: datetime) -> WindowMetrics:
    """Metrics of a set of records (already chosen for the window [start, end))."""
    y = np.asarray([int(r.won) for r in records], dtype=int)
    p = np.asarray([r.probability for r in records], dtype=float)
    n = len(records)
    return WindowMetrics(
        start=start, end=end, rows=n, positives=int(y.sum()) if n else 0, roc_auc=auc(y, p) if n else float("nan"),
        brier=float(np.mean((p - y) ** 2)) if n else float("nan"),
        ece=expected_calibration_error(y, p) if n else float("nan"),
        mean_probability=float(p.mean()) if n else float("nan"), conversion_rate=float(y.mean()) if n else float("nan"),
        log_loss=log_loss(y, p),
    )


def rolling_metrics(
    records: Sequence[PrequentialRecord],
    *,
    window: timedelta,
    step: timedelta | None = None,
    by: Literal["decision", "labelled"] = "decision",
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[WindowMetrics]:
    """Metrics over trailing windows [t - window, t) for t = start + window, + step, ... up to `end`.

    by="decision" groups scores by when they were given (how good were the scores handed out that
    week); by="labelled" by when their labels arrived (what the prequential stream showed then).
    """
    if not records:
        return []
    step = step or window
    if window <= timedelta(0) or step <= timedelta(0):
        raise ValueError("window and step must be positive")
    key = (lambda r: r.decision_time) if by == "decision" else (lambda r: r.labelled_at)
    ordered = sorted(records, key=key)
    times = [key(r) for r in ordered]
    first = start or times[0]
    last = end or (times[-1] + timedelta(microseconds=1))
    out: list[WindowMetrics] = []
    t = first + window
    import bisect

    while t <= last + step - timedelta(microseconds=1):
        w_end = min(t, last)
        lo = bisect.bisect_left(times, w_end - window)
        hi = bisect.bisect_left(times, w_end)
        out.append(window_metrics(ordered[lo:hi], w_end - window, w_end))
        if w_end >= last:
            break
        t += step
    return out
