"""Drift: Population Stability Index per feature and on the score distribution, live window vs training.

    PSI = sum over bins of (live% - train%) * ln(live% / train%)

Bins come from the training data, so one reference (`Profile`) per model is enough and is stored with
it: numeric features get up to 10 quantile bins (edges that coincide, as with a count that is mostly
0, merge), plus a bin for missing values; categorical features get one bin per level seen in training
(the 30 most common), one for levels never seen in training and one for missing. An empty bin counts
as 0.01% so the logarithm stays finite. Rule of thumb: below 0.1 stable, 0.1-0.2 moderate, above 0.2
(the default alert threshold, configurable) a real shift.

`ErrorDriftDetector` runs ADWIN (river) over the prequential error stream: it signals when the model's
recent error rate differs from its past, and its window (`width`, `adwin_window_start`) says how far
back the current concept goes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

DEFAULT_BINS = 10
DEFAULT_THRESHOLD = 0.2
MODERATE = 0.1
EPSILON = 1e-4
MAX_LEVELS = 30
OTHER = "(other)"
MISSING = "(missing)"
SCORE = "score"  # the name the score distribution goes by in a report


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """PSI between two distributions over the same bins, given as counts or proportions."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.size == 0:
        raise ValueError("expected and actual need the same, non-zero number of bins")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("a distribution with no observations has no PSI")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class FeatureReference:
    """The training distribution of one feature: its bins and the share of training rows in each."""

    kind: Literal["numeric", "categorical"]
    proportions: tuple[float, ...]
    edges: tuple[float, ...] = ()  # numeric: bin i holds edges[i-1] < v <= edges[i]; last bin is missing
    levels: tuple[str, ...] = ()  # categorical: one bin per level, then OTHER, then MISSING

    def counts(self, values: Iterable[Any]) -> np.ndarray:
        """How many of `values` fall in each of this reference's bins."""
        out = np.zeros(len(self.proportions))
        if self.kind == "numeric":
            numbers = []
            for v in values:
                if _missing(v):
                    out[-1] += 1
                    continue
                try:
                    numbers.append(float(v))
                except (TypeError, ValueError):
                    out[-1] += 1  # not a number: as unknown as a missing value
            if numbers:
                idx = np.searchsorted(np.asarray(self.edges), np.asarray(numbers), side="left")
                out[: len(self.edges) + 1] += np.bincount(idx, minlength=len(self.edges) + 1)
            return out
        position = {level: i for i, level in enumerate(self.levels)}
        other = len(self.levels)
        for v in values:
            out[other + 1 if _missing(v) else position.get(str(v), other)] += 1
        return out

    def psi(self, values: Iterable[Any]) -> float:
        """PSI of `values` against this reference (NaN when `values` is empty)."""
        counts = self.counts(values)
        if counts.sum() == 0:
            return float("nan")
        return psi(self.proportions, counts)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (stored with the model)."""
        return {"kind": self.kind, "proportions": list(self.proportions), "edges": list(self.edges),
                "levels": list(self.levels)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureReference:
        """Inverse of `to_json`."""
        return cls(kind=data["kind"], proportions=tuple(float(p) for p in data["proportions"]),
                   edges=tuple(float(e) for e in data.get("edges", ())), levels=tuple(map(str, data.get("levels", ()))))


def reference_of(values: Sequence[Any], bins: int = DEFAULT_BINS) -> FeatureReference:
    """Bins and proportions for one training column (numeric when every present value is a number)."""
    present = [v for v in values if not _missing(v)]
    if present and all(_is_number(v) for v in present):
        arr = np.asarray(present, dtype=float)
        edges = tuple(float(x) for x in np.unique(np.quantile(arr, np.linspace(0, 1, bins + 1)[1:-1])))
        ref = FeatureReference("numeric", tuple([0.0] * (len(edges) + 2)), edges=edges)
    else:
        levels: dict[str, int] = {}
        for v in present:
            levels[str(v)] = levels.get(str(v), 0) + 1
        top = tuple(sorted(levels, key=lambda k: (-levels[k], k))[:MAX_LEVELS])
        ref = FeatureReference("categorical", tuple([0.0] * (len(top) + 2)), levels=top)
    counts = ref.counts(values)
    total = counts.sum()
    proportions = tuple(float(c / total) for c in counts) if total else ref.proportions
    return FeatureReference(ref.kind, proportions, ref.edges, ref.levels)


@dataclass
class Profile:
    """Training distributions of the features (and of the score) a model was trained on."""

    features: dict[str, FeatureReference]
    score: FeatureReference | None
    rows: int

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (stored in the model's metadata)."""
        return {"rows": self.rows, "features": {k: v.to_json() for k, v in self.features.items()},
                "score": self.score.to_json() if self.score else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        """Inverse of `to_json`."""
        score = data.get("score")
        return cls(features={k: FeatureReference.from_json(v) for k, v in (data.get("features") or {}).items()},
                   score=FeatureReference.from_json(score) if score else None, rows=int(data.get("rows", 0)))


def profile_of(rows: Sequence[Mapping[str, Any]], features: Sequence[str], scores: Sequence[float] | None = None,
               bins: int = DEFAULT_BINS) -> Profile:
    """The reference profile of training rows (mappings feature -> value) and, optionally, their scores."""
    refs = {name: reference_of([row.get(name) for row in rows], bins) for name in features}
    score_ref = reference_of([float(s) for s in scores], bins) if scores is not None and len(scores) else None
    return Profile(refs, score_ref, len(rows))


@dataclass
class DriftReport:
    """PSI of every feature and of the score, live window against training, and what crossed the threshold."""

    features: dict[str, float]
    score: float | None
    threshold: float
    live_rows: int
    reference_rows: int
    checked_at: datetime
    window_start: datetime | None = None
    window_end: datetime | None = None
    model_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        """Names (features, and `score`) whose PSI is above the threshold, worst first."""
        items = [(k, v) for k, v in self.features.items() if math.isfinite(v) and v > self.threshold]
        if self.score is not None and math.isfinite(self.score) and self.score > self.threshold:
            items.append((SCORE, self.score))
        return [k for k, _ in sorted(items, key=lambda kv: -kv[1])]

    @property
    def alert(self) -> bool:
        """True when anything drifted past the threshold."""
        return bool(self.drifted)

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        """The `n` largest PSIs (features and score)."""
        items = [(k, v) for k, v in self.features.items() if math.isfinite(v)]
        if self.score is not None and math.isfinite(self.score):
            items.append((SCORE, self.score))
        return sorted(items, key=lambda kv: -kv[1])[:n]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (stored on the model row for the admin)."""
        def num(v: float | None) -> float | None:
            return round(float(v), 6) if v is not None and math.isfinite(v) else None

        return {
            "features": {k: num(v) for k, v in self.features.items()}, "score": num(self.score),
            "threshold": self.threshold, "drifted": self.drifted, "alert": self.alert, "live_rows": self.live_rows,
            "reference_rows": self.reference_rows, "checked_at": self.checked_at.isoformat(),
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "model_version": self.model_version, **self.extra,
        }


def drift_report(
    profile: Profile,
    live_rows: Sequence[Mapping[str, Any]],
    live_scores: Sequence[float] | None,
    *,
    checked_at: datetime,
    threshold: float = DEFAULT_THRESHOLD,
    window: tuple[datetime, datetime] | None = None,
    model_version: str | None = None,
    min_rows: int = 1,
) -> DriftReport:
    """Compare a live window (feature mappings, and scores) with a model's training profile."""
    if threshold <= 0:
        raise ValueError("the PSI threshold must be positive")
    enough = len(live_rows) >= min_rows
    features = {name: (ref.psi([row.get(name) for row in live_rows]) if enough else float("nan"))
                for name, ref in profile.features.items()}
    score = None
    if profile.score is not None and live_scores is not None and len(live_scores) >= min_rows:
        score = profile.score.psi([float(s) for s in live_scores])
    return DriftReport(features=features, score=score, threshold=threshold, live_rows=len(live_rows),
                       reference_rows=profile.rows, checked_at=checked_at, window_start=window[0] if window else None,
                       window_end=window[1] if window else None, model_version=model_version)


class ErrorDriftDetector:
    """ADWIN (river.drift.ADWIN) over the prequential error |y - p|, fed in the order labels arrive.

    It is both a trigger (`update` returns True when the recent error rate differs from the older one,
    at confidence `delta`: a false alarm on a stationary stream has probability about `delta` per check)
    and a window: after a change ADWIN drops the older part of its window, so `width` is how many of the
    newest labels still look like the current concept (see `adwin_window_start`).
    """

    def __init__(self, delta: float = 0.002) -> None:
        from river.drift import ADWIN

        self._adwin = ADWIN(delta=delta)
        self.delta = delta
        self.detections = 0
        self.seen = 0

    @property
    def width(self) -> int:
        """How many of the newest labels ADWIN currently keeps (all of them until a change cuts the window)."""
        return int(self._adwin.width)

    @property
    def error_rate(self) -> float:
        """The mean error over ADWIN's current window."""
        return float(self._adwin.estimation)

    def update(self, y: int, p: float) -> bool:
        """Feed one prequential outcome; True when ADWIN detects a change in the error rate."""
        self._adwin.update(abs(float(y) - float(p)))
        self.seen += 1
        if self._adwin.drift_detected:
            self.detections += 1
            return True
        return False


def adwin_window_start(decision_times: Sequence[datetime], width: int) -> datetime | None:
    """Decision time of the oldest example ADWIN still holds: `decision_times` in label order, the last
    `width` of them are ADWIN's window (None when the window is empty).

    Labels arrive out of decision order (wins mature sooner than losses), so this is the earliest decision
    time among the window's labels, not that of the window's first label.
    """
    if width <= 0 or not decision_times:
        return None
    return min(decision_times[-width:])


def prequential_adwin(records: Sequence[Any], delta: float = 0.002) -> dict[str, Any]:
    """ADWIN over a prequential stream (records with .won, .probability, .labelled_at, in label order).

    Returns how many changes in the error rate it detected and when.
    """
    detector = ErrorDriftDetector(delta)
    changes = [r.labelled_at.isoformat() for r in records if detector.update(int(r.won), r.probability)]
    errors = [abs(int(r.won) - float(r.probability)) for r in records]
    return {"detections": len(changes), "at": changes[:20], "delta": delta, "width": detector.width,
            "mean_error": float(np.mean(errors)) if errors else None}
