"""Prequential evaluation: every label is scored before it can be trained on; rolling metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from scoring.labels import LabelledLead
from scoring.prequential import Prediction, PrequentialEvaluator, PrequentialRecord, auc, rolling_metrics

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def label(i: int, won: bool, decided: float, known: float) -> LabelledLead:
    return LabelledLead(f"l{i}", won, T0 + decided * DAY, T0 + known * DAY, "test")


def test_each_label_is_scored_before_it_is_released_for_training() -> None:
    calls: list[tuple[str, int]] = []
    evaluator: PrequentialEvaluator

    def predict(item: LabelledLead) -> Prediction:
        # The model must not have been able to train on this label yet.
        assert item not in evaluator.training
        calls.append((item.lead_id, len(evaluator.training)))
        return Prediction(0.9 if item.won else 0.1, f"m{len(evaluator.training) // 2}")

    evaluator = PrequentialEvaluator(predict)
    labels = [label(3, True, 5, 9), label(1, False, 1, 2), label(2, True, 3, 4)]
    records = evaluator.observe_all(labels)
    # In order of label arrival, each tested against a model that had seen only the earlier ones.
    assert calls == [("l1", 0), ("l2", 1), ("l3", 2)]
    assert [r.lead_id for r in records] == ["l1", "l2", "l3"]
    assert [x.lead_id for x in evaluator.training] == ["l1", "l2", "l3"]
    assert records[2].model_version == "m1"


def test_labels_without_a_live_score_still_train() -> None:
    evaluator = PrequentialEvaluator(lambda item: None if item.lead_id == "l1" else Prediction(0.5, "m"))
    evaluator.observe_all([label(1, True, 1, 2), label(2, False, 1, 3)])
    assert evaluator.untested == 1 and len(evaluator.records) == 1 and len(evaluator.training) == 2


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 1)  # many ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_rolling_windows_by_decision_time() -> None:
    records = []
    for day in range(28):
        for k in range(10):
            won = k < 3
            # Good scores in the first two weeks, random in the last two.
            p = (0.8 if won else 0.2) if day < 14 else 0.5
            records.append(PrequentialRecord(f"{day}-{k}", T0 + day * DAY, T0 + (day + 30) * DAY, p, won, "m"))
    windows = rolling_metrics(records, window=7 * DAY, step=7 * DAY, by="decision")
    assert [w.rows for w in windows] == [70, 70, 70, 70]
    assert [w.roc_auc for w in windows[:2]] == [1.0, 1.0]
    assert [w.roc_auc for w in windows[2:]] == [0.5, 0.5]
    assert windows[0].conversion_rate == pytest.approx(0.3)
    assert windows[0].ece == pytest.approx(0.2)  # scores 0.8/0.2 vs rates 1/0
    by_label = rolling_metrics(records, window=7 * DAY, by="labelled")
    assert by_label[0].start == T0 + 30 * DAY
    assert windows[0].to_json()["roc_auc"] == 1.0
