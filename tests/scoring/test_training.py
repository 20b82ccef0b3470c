"""Training: labels, splits, leakage guard, and the bundle round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scoring.model import BundleError, ModelBundle
from scoring.registry import ModelRegistry
from scoring.scorer import score, score_frame
from scoring.training import (
    TrainingError,
    TrainOptions,
    parse_label,
    run_experiment,
    single_feature_auc,
    split_rows,
)


def test_parse_label_accepts_binary_words_and_rejects_the_rest() -> None:
    y, mask = parse_label(pd.DataFrame({"won": ["Yes", "no", None, "YES"]}), "won")
    assert y.tolist() == [1, 0, 1] and mask.tolist() == [True, True, False, True]
    with pytest.raises(TrainingError, match="not found"):
        parse_label(pd.DataFrame({"a": [1]}), "won")
    with pytest.raises(TrainingError, match="not binary"):
        parse_label(pd.DataFrame({"won": ["1", "2", "3"]}), "won")
    with pytest.raises(TrainingError, match="only one outcome"):
        parse_label(pd.DataFrame({"won": [1, 1, 1]}), "won")


def test_time_ordered_split_holds_out_the_newest_rows() -> None:
    y = np.array([0, 1] * 10)
    order = np.arange(20)[::-1]  # row 0 is the newest
    first, second = split_rows(y, 0.2, seed=0, order=order)
    assert sorted(second.tolist()) == [0, 1, 2, 3]
    assert len(first) == 16


def test_single_feature_auc_flags_a_leak_but_not_an_id() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    leak = pd.Series(np.where(y == 1, "Closed won", "Closed lost"))
    ids = pd.Series([f"id{i}" for i in range(400)])
    noise = pd.Series(rng.normal(size=400))
    assert single_feature_auc(leak, "categorical", y) > 0.99
    assert single_feature_auc(ids, "categorical", y) < 0.6
    assert single_feature_auc(noise, "numeric", y) < 0.6


def test_leakage_guard_drops_the_leaky_column_unless_kept(leads_frame: pd.DataFrame) -> None:
    exp = run_experiment(leads_frame, TrainOptions(label="converted", id_column="lead_id"), seed=1)
    assert "status_after_call" in exp.dropped
    assert exp.dropped["status_after_call"].startswith("leak guard: single-feature AUC")
    assert "status_after_call" not in exp.bundle.main.pre.input_columns
    kept = run_experiment(leads_frame, TrainOptions(label="converted", id_column="lead_id",
                                                    keep=("status_after_call",)), seed=1)
    assert "status_after_call" in kept.bundle.main.pre.input_columns
    assert kept.suspicious["status_after_call"] > 0.97  # kept on request, still flagged in the report


def test_experiment_beats_chance_and_reports_baselines(experiment) -> None:
    assert experiment.metrics["roc_auc"] > 0.75
    assert set(experiment.baselines) == {"logistic_regression", "rules"}
    meta = experiment.bundle.metadata
    assert meta["features"] == experiment.bundle.main.pre.feature_names
    assert len(meta["grade_thresholds"]) == 4
    assert meta["grade_thresholds"] == sorted(meta["grade_thresholds"], reverse=True)
    assert meta["dropped_columns"]["lead_id"] == "id column"


def test_time_column_orders_the_split(leads_frame: pd.DataFrame) -> None:
    exp = run_experiment(leads_frame, TrainOptions(label="converted", id_column="lead_id", time_column="created_at",
                                                   drop=("status_after_call",)))
    training = exp.bundle.metadata["training"]
    assert training["split"] == "time-ordered"
    # Training window ends before the newest 20% of leads begins.
    created = pd.to_datetime(leads_frame["created_at"], utc=True).sort_values()
    assert pd.Timestamp(training["window"]["end"]) < created.iloc[int(0.8 * len(created)) + 1]
    assert "created_at" not in exp.bundle.main.pre.input_columns


def test_bundle_round_trip_scores_identically(experiment, leads_frame: pd.DataFrame, tmp_path) -> None:
    bundle = experiment.bundle
    bundle.save(tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert files == ["fit_model.ubj", "metadata.json", "model.ubj"]
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    assert meta["main"]["calibrator"]["method"] == "platt"
    assert isinstance(meta["main"]["calibrator"]["a"], float)
    loaded = ModelBundle.load(tmp_path / "b")
    np.testing.assert_array_equal(loaded.predict_proba(leads_frame), bundle.predict_proba(leads_frame))
    before, after = score_frame(leads_frame, bundle), score_frame(leads_frame, loaded)
    assert before.values.tolist() == after.values.tolist()
    assert before.grades == after.grades
    assert before.reasons == after.reasons
    row = {k: (None if pd.isna(v) else v) for k, v in leads_frame.iloc[3].items()}
    one = score(row, loaded)
    assert one.value == after.values[3] and one.grade == after.grades[3] and one.reasons == after.reasons[3]


def test_load_rejects_incomplete_or_edited_bundles(experiment, tmp_path) -> None:
    with pytest.raises(BundleError, match="no model bundle"):
        ModelBundle.load(tmp_path / "nothing")
    path = experiment.bundle.save(tmp_path / "b")
    meta = json.loads((path / "metadata.json").read_text())
    meta["main"]["preprocessing"]["columns"][0]["levels"].append("sneaky")
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="feature hash mismatch"):
        ModelBundle.load(path)


def test_registry_stores_versions_and_returns_a_row(experiment, tmp_path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert registry.latest() is None
    row = registry.register(experiment.bundle)
    assert row["version"] == experiment.bundle.version
    assert row["feature_hash"] == experiment.bundle.metadata["feature_hash"]
    assert row["metrics"]["roc_auc"] == experiment.metrics["roc_auc"]
    assert row["status"] == "candidate" and row["has_fit_model"] is True
    assert registry.versions() == [row["version"]]
    assert registry.resolve(row["version"]).version == row["version"]
    assert registry.resolve(row["path"]).version == row["version"]
    with pytest.raises(BundleError, match="already registered"):
        registry.register(experiment.bundle)
    with pytest.raises(BundleError, match="neither"):
        registry.resolve("no-such-version")
