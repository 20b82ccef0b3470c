"""Scoring: features in, `core.records.Score` out (score 0-100, fit grade A-F, reasons).

- `score` is calibrated probability x 100 (rounded), or in percentile mode the lead's percentile
  among the training rows' scores (50 = a median lead).
- `grade` (always A-F) comes from the fit-only head (columns describing who the lead is, not what
  they did) with A-D cut points at the 80/60/40/20th percentiles of its training predictions; F
  below. A bundle with no fit signal at all (no fit columns, or all of them empty) has no fit head:
  its grade is then the score's own percentile among the training rows, with the same cut points,
  and the model report says so (`grade_source` "score").
- `reasons` are the top 3 positive and top 3 negative TreeSHAP contributions (scoring.reasons); every
  lead gets at least one, and none names a feature that did not move its score.
- Cold start: `Scorer` serves the rule-based points model (scoring.rules) until a bundle trained on
  enough labelled outcomes is given to it; the rules grade from their fit points.
The model is loaded once by the caller and passed in; nothing here reads files or settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.records import Score, utcnow
from scoring.model import GRADES, ModelBundle
from scoring.phrasing import Phrasing
from scoring.reasons import Labels, reasons_for, reasons_for_batch
from scoring.rules import (
    COLD_START_RULES,
    DEFAULT_MIN_OUTCOMES,
    DEFAULT_MIN_POSITIVES,
    PointsModel,
    use_trained_model,
)

Mode = Literal["probability", "percentile"]
ReasonMethod = Literal["exact", "xgboost", "approx", "none"]


def to_value(p: float | np.ndarray, model: ModelBundle, mode: Mode = "probability") -> np.ndarray:
    """Map calibrated probabilities to 0-100 scores (probability x 100, or training percentile)."""
    p = np.asarray(p, dtype=float)
    if mode == "percentile":
        q = model.score_percentiles
        if q.size < 2:
            raise ValueError("this model has no score percentiles; use probability mode")
        # Average the left and right positions so that ties in the stored quantiles land in the middle.
        ranks = np.linspace(0, 100, q.size)
        left = np.interp(p, q, ranks, left=0, right=100)
        right = 100 - np.interp(-p, -q[::-1], ranks, left=0, right=100)
        return np.clip(np.rint((left + right) / 2), 0, 100).astype(int)
    return np.clip(np.rint(p * 100), 0, 100).astype(int)


def to_grade(fit_p: np.ndarray, thresholds: Sequence[float]) -> list[str]:
    """Grades A-F from probabilities and the descending A/B/C/D cut points (at or above a cut: that grade)."""
    p = np.asarray(fit_p, dtype=float).reshape(-1)
    cuts = np.asarray(list(thresholds), dtype=float)[: len(GRADES) - 1]
    # With descending cuts, the number of cuts a value falls below is its grade's index.
    index = (p[:, None] < cuts[None, :]).sum(axis=1) if cuts.size else np.full(p.size, len(GRADES) - 1)
    if cuts.size:
        index = np.where(index == cuts.size, len(GRADES) - 1, index)
    return [GRADES[i] for i in index]


def score(
    features: Mapping[str, Any],
    model: ModelBundle,
    *,
    feature_time: datetime | None = None,
    mode: Mode = "probability",
    with_reasons: bool = True,
    phrasing: Labels = None,
) -> Score:
    """Score one lead from its feature mapping (column name -> raw value).

    `phrasing` (a `Phrasing` or a {column: label} mapping) overrides the labels the model recorded.
    """
    main = model.main
    x = main.vector(features)[None, :]
    contribs = main.contributions(x) if with_reasons else None
    margin = contribs.sum(axis=1) if contribs is not None else main.margin(x)
    p = float(main.calibrator.apply(margin)[0])
    fit = model.fit if model.grade_source == "fit" else None
    if fit is not None:
        try:
            X_fit = model.fit_matrix(x)
        except ValueError:  # fit features are not a subset of the main model's
            X_fit = fit.vector(features)[None, :]
        grade = to_grade(fit.proba(X_fit), model.grade_thresholds)[0]
    else:
        grade = to_grade(np.array([p]), model.grade_thresholds)[0]
    book = _phrasing(model, phrasing)
    reasons = reasons_for(main.pre, x[0], contribs[0], phrasing=book) if contribs is not None else ()
    return Score(
        value=int(to_value(p, model, mode)),
        probability=p,
        grade=grade,
        reasons=reasons,
        model_version=model.version,
        feature_time=feature_time or utcnow(),
    )


def _phrasing(model: ModelBundle, given: Labels) -> Phrasing:
    """The model's recorded labels, overridden by the caller's."""
    recorded = model.phrasing
    return recorded.merged(Phrasing.of(given)) if given is not None else recorded


@dataclass
class BatchScores:
    """Column-wise results of `score_frame`."""

    values: np.ndarray
    probabilities: np.ndarray
    grades: list[str | None]
    reasons: list[tuple[str, ...]]


def score_frame(
    frame: pd.DataFrame, model: ModelBundle, *, mode: Mode = "probability", reasons: ReasonMethod = "exact",
    phrasing: Labels = None,
) -> BatchScores:
    """Score many leads at once (vectorised preprocessing and TreeSHAP).

    reasons: "exact" (lookup-table TreeSHAP, or XGBoost's when trees are too deep), "xgboost"
    (always XGBoost's pred_contribs), "approx" (Saabas; for comparison), "none". `phrasing` as in `score`.
    """
    main = model.main
    X = main.pre.transform(frame)
    if reasons == "none":
        margin = main.margin(X)
        texts: list[tuple[str, ...]] = [()] * len(frame)
    else:
        contribs = main.contributions(X, method={"exact": "auto"}.get(reasons, reasons))
        margin = contribs.sum(axis=1)
        texts = reasons_for_batch(main.pre, X, contribs, phrasing=_phrasing(model, phrasing))
    p = main.calibrator.apply(margin)
    fit = model.fit if model.grade_source == "fit" else None
    if fit is not None:
        grades: list[str | None] = list(to_grade(fit.proba(model.fit_matrix(X, frame)), model.grade_thresholds))
    else:
        grades = list(to_grade(p, model.grade_thresholds))
    return BatchScores(values=to_value(p, model, mode), probabilities=p, grades=grades, reasons=texts)


class Scorer:
    """Chooses between the trained bundle and the cold-start rules, then scores.

    The bundle is used only when it was trained on at least `min_outcomes` labelled rows with at
    least `min_positives` conversions (both configurable); until then the points model serves.
    """

    def __init__(
        self,
        model: ModelBundle | None,
        *,
        rules: PointsModel = COLD_START_RULES,
        min_outcomes: int = DEFAULT_MIN_OUTCOMES,
        min_positives: int = DEFAULT_MIN_POSITIVES,
        mode: Mode = "probability",
        online: Any = None,
        online_weight: float = 0.0,
        online_version: str = "online",
    ) -> None:
        self.rules = rules
        self.mode = mode
        # The online challenger (scoring.online.OnlineModel) while its blend with the model serves: the
        # probability blends the two on log-odds; grade and reasons stay the model's.
        self.online = online
        self.online_weight = online_weight
        self.online_version = online_version
        self.model: ModelBundle | None = None
        if model is not None:
            outcomes = model.metadata.get("outcomes", {})
            total = int(outcomes.get("labelled", 0))
            positives = int(outcomes.get("positives", 0))
            if use_trained_model(total, positives, min_outcomes=min_outcomes, min_positives=min_positives):
                self.model = model

    @property
    def blending(self) -> bool:
        """True while the online challenger's blend with the model serves."""
        return self.model is not None and self.online is not None and self.online_weight > 0

    @property
    def version(self) -> str:
        """What produced the scores: the model's version, plus the online snapshot's while the blend serves."""
        if self.model is None:
            return f"rules:{self.rules.name}"
        if self.blending:
            return f"{self.model.version}+{self.online_version}"[:64]
        return self.model.version

    def blend(self, probabilities: Sequence[float], vectors: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The model's probabilities blended with the online challenger's on the same vectors."""
        from scoring.online import blend

        return np.array([blend(float(p), self.online.predict_proba(v), self.online_weight)
                         for p, v in zip(probabilities, vectors)], dtype=float)

    @property
    def using_rules(self) -> bool:
        """True while the cold-start rules serve."""
        return self.model is None

    def score(self, features: Mapping[str, Any], *, feature_time: datetime | None = None) -> Score:
        """Score one lead with the model, or with the rules during cold start (graded by their fit points)."""
        if self.model is not None:
            result = score(features, self.model, feature_time=feature_time, mode=self.mode)
            if self.blending:
                p = self.blend([result.probability], [features])[0]
                result = replace(result, probability=p, value=int(to_value(p, self.model, self.mode)),
                                 model_version=self.version)
            return result
        value, reasons = self.rules.score_row(features)
        return Score(
            value=value,
            probability=value / 100.0,
            grade=self.rules.grade_row(features, value),
            reasons=reasons[:6],
            model_version=f"rules:{self.rules.name}",
            feature_time=feature_time or utcnow(),
        )
