"""Scores, grades, reasons and the cold-start switch."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.reasons import agreement, reason_sets, top_contributions, top_contributions_batch
from scoring.rules import COLD_START_RULES
from scoring.scorer import Scorer, score, score_frame, to_grade, to_value
from scoring.training import TrainOptions, run_experiment


def _row(frame: pd.DataFrame, i: int) -> dict:
    return {k: (None if pd.isna(v) else v) for k, v in frame.iloc[i].items()}


def test_score_is_probability_times_100_with_grade_and_signed_reasons(experiment, leads_frame) -> None:
    s = score(_row(leads_frame, 0), experiment.bundle)
    assert s.value == round(s.probability * 100)
    assert s.grade in {"A", "B", "C", "D", "F"}
    assert s.model_version == experiment.bundle.version
    assert 1 <= len(s.reasons) <= 6
    signs = [r[0] for r in s.reasons]
    assert signs == sorted(signs)  # positives ("+") before negatives ("-")
    assert all(r[:2] in ("+ ", "- ") for r in s.reasons)


def test_reasons_name_the_columns_and_values(experiment, leads_frame) -> None:
    batch = score_frame(leads_frame, experiment.bundle)
    text = " ".join(r for reasons in batch.reasons for r in reasons)
    assert "minutes on site" in text and "minutes_on_site" not in text
    assert "source is Referral" in text


def test_grades_cover_the_scale_by_fit_percentiles(experiment, leads_frame) -> None:
    grades = score_frame(leads_frame, experiment.bundle).grades
    assert set(grades) <= {"A", "B", "C", "D", "F"} and len(set(grades)) >= 4
    assert to_grade(np.array([0.9, 0.5, 0.1]), [0.8, 0.6, 0.4, 0.2]) == ["A", "C", "F"]


def test_no_fit_columns_means_grades_from_the_score_percentile(leads_frame) -> None:
    exp = run_experiment(leads_frame, TrainOptions(label="converted", id_column="lead_id",
                                                   drop=("status_after_call",)), seed=2)
    assert exp.bundle.fit is None and exp.bundle.grade_source == "score"
    batch = score_frame(leads_frame, exp.bundle)
    assert set(batch.grades) == {"A", "B", "C", "D", "F"}
    assert score(_row(leads_frame, 0), exp.bundle).grade == batch.grades[0]


def test_percentile_mode_ranks_against_training_scores(experiment, leads_frame) -> None:
    bundle = experiment.bundle
    q = bundle.score_percentiles
    assert to_value(q[50], bundle, "percentile") == 50
    assert to_value(q[0] - 0.01, bundle, "percentile") == 0
    assert to_value(q[-1] + 0.01, bundle, "percentile") == 100
    pct = score_frame(leads_frame, bundle, mode="percentile").values
    prob = score_frame(leads_frame, bundle).values
    assert np.corrcoef(pct, prob)[0, 1] > 0.9
    assert abs(np.median(pct) - 50) < 10


def test_top_contributions_pick_three_each_way_above_the_noise_floor() -> None:
    contribs = np.array([0.5, -0.2, 0.001, 0.3, -0.7, 0.1, 0.2, -0.005, 1.0])  # last = bias
    pos, neg = top_contributions(contribs)
    assert pos == [0, 3, 6] and neg == [4, 1]
    bpos, bneg = top_contributions_batch(contribs[None, :])
    assert bpos[0].tolist() == [0, 3, 6] and bneg[0].tolist() == [4, 1, -1]
    sets = reason_sets(bpos, bneg)
    assert agreement(sets, sets) == 1.0


def test_scorer_serves_rules_until_enough_outcomes(experiment, leads_frame) -> None:
    cold = Scorer(None)
    s = cold.score({"demo_requests_30d": 1})
    assert cold.using_rules and s.model_version == f"rules:{COLD_START_RULES.name}" and s.grade == "C"
    assert s.value == 50 and s.reasons == ("+ requested a demo",)
    # The fixture has 600 labelled leads with ~200 conversions: above the default 500/50.
    assert not Scorer(experiment.bundle).using_rules
    assert Scorer(experiment.bundle, min_outcomes=10_000).using_rules
    warm = Scorer(experiment.bundle, min_outcomes=100, min_positives=20)
    assert warm.score(_row(leads_frame, 0)).model_version == experiment.bundle.version
