"""Champion / challenger: train a challenger, judge it against the champion on the newest labels, decide.

The challenger trains exactly as `leadbridge train` does (scoring.training.run_experiment, with its
time-ordered holdout of the newest 20% labelled leads by decision time, the same metrics and baselines). The
champion is then scored on those same holdout rows, so both are judged on leads neither trained on
(the champion was trained earlier, before those labels existed). With no trained champion, the
cold-start rules that serve meanwhile are the bar. A challenger is promoted only when it beats the
bar by `margin` on the chosen metric (ROC AUC by default); otherwise it is kept for inspection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from scoring.drift import Profile, profile_of
from scoring.metrics import evaluate
from scoring.model import ModelBundle
from scoring.rules import COLD_START_RULES, PointsModel
from scoring.training import Experiment, TrainOptions, _time_order, parse_label, run_experiment, split_rows

DEFAULT_MARGIN = 0.005
DEFAULT_METRIC = "roc_auc"
LOWER_IS_BETTER = frozenset({"brier", "ece"})


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a challenger replaces the champion, and why."""

    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    champion_name: str
    margin: float

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (stored with the challenger's row)."""
        def num(v: float | None) -> float | None:
            return round(float(v), 6) if v is not None and math.isfinite(v) else None

        return {"promote": self.promote, "reason": self.reason, "metric": self.metric,
                "challenger": num(self.challenger), "champion": num(self.champion),
                "champion_name": self.champion_name, "margin": self.margin}


def decide_promotion(
    challenger: float,
    champion: float | None,
    *,
    margin: float = DEFAULT_MARGIN,
    metric: str = DEFAULT_METRIC,
    champion_name: str = "champion",
) -> PromotionDecision:
    """Promote when the challenger beats the champion's holdout `metric` by at least `margin`."""
    if margin < 0:
        raise ValueError("the promotion margin cannot be negative")

    def decision(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, reason, metric, challenger, champion, champion_name, margin)

    if not math.isfinite(challenger):
        return decision(False, f"the challenger's {metric} is undefined on the holdout (one class only?)")
    if champion is None or not math.isfinite(champion):
        return decision(True, f"no comparable {champion_name} {metric}; the challenger has {challenger:.4f}")
    gain = (champion - challenger) if metric in LOWER_IS_BETTER else (challenger - champion)
    if gain >= margin - 1e-12:
        return decision(True, f"{metric} {challenger:.4f} vs {champion_name} {champion:.4f}: "
                              f"better by {gain:.4f} >= margin {margin}")
    return decision(False, f"{metric} {challenger:.4f} vs {champion_name} {champion:.4f}: "
                           f"better by {gain:.4f} < margin {margin}; kept for inspection")


def definition_mismatch(definition: int, champion_definition: int) -> str | None:
    """Why a champion cannot be compared with a challenger (None: both learnt the same outcome definition)."""
    if definition == champion_definition:
        return None
    return (f"the champion was trained under outcome definition v{champion_definition}, the challenger under "
            f"v{definition}: not compared")


@dataclass
class ChallengerResult:
    """A trained challenger, how it and the champion did on the same holdout, and the decision."""

    experiment: Experiment
    holdout: pd.DataFrame
    y_holdout: np.ndarray
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    champion_name: str
    decision: PromotionDecision
    profile: Profile


def split_frame(frame: pd.DataFrame, options: TrainOptions, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(training rows, holdout rows, holdout labels) exactly as `run_experiment` splits `frame`."""
    y_all, labelled = parse_label(frame, options.label)
    data = frame.loc[labelled].reset_index(drop=True)
    order = _time_order(data, options.time_column)
    train_idx, test_idx = split_rows(y_all, options.test_fraction, seed, order)
    return data.iloc[train_idx].reset_index(drop=True), data.iloc[test_idx].reset_index(drop=True), y_all[test_idx]


def rules_probabilities(frame: pd.DataFrame, rules: PointsModel = COLD_START_RULES) -> np.ndarray:
    """The cold-start rules' scores as probabilities (score / 100), for judging against the rules."""
    return rules.score_frame(frame) / 100.0


def feature_importance(bundle: ModelBundle) -> dict[str, float]:
    """Total gain per input column of the main booster, normalised to sum to 1."""
    pre = bundle.main.pre
    gains = bundle.main.booster.get_score(importance_type="total_gain")
    by_xgb = dict(zip(pre.xgb_feature_names, pre.feature_names))
    out: dict[str, float] = {}
    for name, gain in gains.items():
        column = by_xgb.get(name, name)
        out[column] = out.get(column, 0.0) + float(gain)
    total = sum(out.values()) or 1.0
    return {k: round(v / total, 6) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def train_challenger(
    frame: pd.DataFrame,
    options: TrainOptions,
    *,
    champion: ModelBundle | None,
    margin: float = DEFAULT_MARGIN,
    metric: str = DEFAULT_METRIC,
    rules: PointsModel = COLD_START_RULES,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    now: datetime | None = None,
    reference_rows: Sequence[Mapping[str, Any]] | None = None,
    sample_weight: Sequence[float] | np.ndarray | None = None,
    definition: int = 0,
    champion_definition: int = 0,
) -> ChallengerResult:
    """Train a challenger on `frame`, evaluate it and the champion (or the rules) on its holdout, decide.

    The drift reference stored with the challenger is the profile of `reference_rows` (the population
    it will score, sampled like the live window: see scoring.training_set.population_rows), or of its
    training rows when none are given. `sample_weight` (one per row of `frame`) weighs the challenger's
    training and calibration; both models are judged unweighted on the same holdout. A champion trained under
    another outcome definition (`champion_definition` != `definition`, the versions of what counts as converted)
    is not compared: its metric on labels it was not trained for says nothing, so the rules are the bar instead.
    """
    stale = definition_mismatch(definition, champion_definition) if champion is not None else None
    if stale is not None:
        champion = None
    experiment = run_experiment(frame, options, seed=seed, progress=progress, now=now, sample_weight=sample_weight)
    train_part, holdout, y = split_frame(frame, options, seed)
    p_challenger = experiment.test_probabilities
    if len(p_challenger) != len(y):
        raise RuntimeError("holdout rows do not line up with the experiment's holdout")
    challenger_metrics = evaluate(y, p_challenger)
    if champion is not None:
        champion_name = f"champion {champion.version}"
        champion_metrics = evaluate(y, champion.predict_proba(holdout))
    else:
        champion_name = f"rules ({rules.name})" + (f"; {stale}" if stale else "")
        champion_metrics = evaluate(y, rules_probabilities(holdout, rules))
    decision = decide_promotion(challenger_metrics[metric], champion_metrics.get(metric), margin=margin,
                                metric=metric, champion_name=champion_name)
    skip = {options.label, options.id_column, options.time_column, *options.drop}
    features = [c for c in frame.columns if c not in skip]
    if reference_rows:
        reference = pd.DataFrame(list(reference_rows))
        for column in features:
            if column not in reference.columns:
                reference[column] = None
    else:
        reference = train_part
    records = reference[features].to_dict("records")
    scores = experiment.bundle.predict_proba(reference)
    profile = profile_of(records, features, list(scores))
    experiment.bundle.metadata["drift_reference"] = profile.to_json()
    experiment.bundle.metadata["feature_importance"] = feature_importance(experiment.bundle)
    experiment.bundle.metadata["outcome_definition"] = definition
    experiment.bundle.metadata.setdefault("params", {})["outcome_definition"] = definition
    experiment.bundle.metadata["champion_comparison"] = {
        "decision": decision.to_json(), "challenger": challenger_metrics, "champion": champion_metrics,
        "holdout_rows": len(y), "holdout_positives": int(np.sum(y)),
    }
    return ChallengerResult(experiment, holdout, y, challenger_metrics, champion_metrics, champion_name, decision,
                            profile)
