"""Type inference and preprocessing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scoring.calibration import Calibrator
from scoring.model import Head
from scoring.tabular import OTHER_LEVEL, Preprocessor, clean_missing, infer_kind


def test_infer_kind_recognises_numbers_booleans_dates_and_categories() -> None:
    assert infer_kind(pd.Series([1, 2, 3])) == "numeric"
    assert infer_kind(pd.Series(["1,200", "3", None, "4.5"])) == "numeric"
    assert infer_kind(pd.Series(["Yes", "No", "yes", None])) == "boolean"
    assert infer_kind(pd.Series(["TRUE", "false"])) == "boolean"
    assert infer_kind(pd.Series(["2024-01-05", "2024-02-10 10:30", "2023/12/01"])) == "date"
    assert infer_kind(pd.Series(["Google", "Direct", "Google"])) == "categorical"
    # Mostly numbers but real words mixed in: a category, not a number with silent NaNs.
    assert infer_kind(pd.Series(["1", "2", "three", "four"])) == "categorical"


def test_select_and_blanks_are_missing() -> None:
    frame = pd.DataFrame({"city": ["Mumbai", "Select", " Select ", "", "Pune"]})
    cleaned = clean_missing(frame)
    assert cleaned["city"].isna().tolist() == [False, True, True, True, False]


def test_rare_levels_merge_and_unseen_levels_map_to_other() -> None:
    frame = pd.DataFrame({"src": ["a"] * 20 + ["b"] * 20 + ["rare"] * 2 + [None] * 3})
    pre = Preprocessor.fit(frame, min_level_count=5)
    spec = pre.columns[0]
    assert spec.levels == ("a", "b")
    cleaned = pre.clean(pd.DataFrame({"src": ["a", "rare", "never seen", None]}))
    assert cleaned["src"].tolist()[:3] == ["a", OTHER_LEVEL, OTHER_LEVEL]
    assert pd.isna(cleaned["src"].iloc[3])
    X = pre.transform(pd.DataFrame({"src": ["a", "b", "zzz", None]}))
    assert X[:3, 0].tolist() == [0.0, 1.0, 2.0]
    assert math.isnan(X[3, 0])


def test_constant_and_identifier_columns_are_dropped_with_a_reason() -> None:
    frame = pd.DataFrame({
        "id": [f"x{i}" for i in range(200)],
        "const": ["No"] * 200,
        "n": np.arange(200),
    })
    pre = Preprocessor.fit(frame)
    assert pre.input_columns == ["n"]
    assert "identifier" in pre.dropped["id"]
    assert pre.dropped["const"] == "constant"


def test_dates_become_weekday_month_hour() -> None:
    frame = pd.DataFrame({"created": ["2024-01-01 10:15", "2024-03-09 23:00", None]})
    pre = Preprocessor.fit(frame)
    assert pre.feature_names == ["created (dow)", "created (month)", "created (hour)"]
    X = pre.transform(frame)
    assert X[0].tolist() == [0.0, 1.0, 10.0]  # 2024-01-01 was a Monday
    assert X[1].tolist() == [5.0, 3.0, 23.0]
    assert np.isnan(X[2]).all()


def test_preprocessor_json_round_trip_transforms_identically(leads_frame: pd.DataFrame) -> None:
    pre = Preprocessor.fit(leads_frame.drop(columns=["converted"]))
    again = Preprocessor.from_json(pre.to_json())
    np.testing.assert_array_equal(pre.transform(leads_frame), again.transform(leads_frame))


def test_single_row_vector_matches_frame_transform(leads_frame: pd.DataFrame) -> None:
    pre = Preprocessor.fit(leads_frame.drop(columns=["converted", "lead_id"]))
    import xgboost as xgb

    head = Head(booster=xgb.Booster(), pre=pre, calibrator=Calibrator("none"), best_iteration=0)
    X = pre.transform(leads_frame)
    for i in range(0, len(leads_frame), 37):
        row = {k: (None if pd.isna(v) else v) for k, v in leads_frame.iloc[i].items()}
        np.testing.assert_array_equal(head.vector(row), X[i])


def test_describe_value_reads_like_a_sentence() -> None:
    frame = pd.DataFrame({"Lead Origin": ["API"] * 10 + ["Lead Add Form"] * 10, "Visits": range(20),
                          "Opt In": ["Yes", "No"] * 10})
    pre = Preprocessor.fit(frame)
    X = pre.transform(pd.DataFrame({"Lead Origin": ["Lead Add Form"], "Visits": [1532], "Opt In": ["Yes"]}))
    assert pre.describe_value(0, X[0, 0]) == "lead origin is Lead Add Form"
    assert pre.describe_value(1, X[0, 1]) == "1,532 visits"
    assert pre.describe_value(2, X[0, 2]) == "opt in is yes"
    assert pre.describe_value(0, float("nan")) == "lead origin unknown"
    assert pre.describe_value(1, X[0, 1], label="Time on site (seconds)") == "26 minutes on the site"
