"""Lookup-table TreeSHAP must equal XGBoost's own pred_contribs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from scoring.treeshap import TooDeep, TreeExplainer


def _xgb_contribs(head, X: np.ndarray) -> np.ndarray:
    return head.contributions(X, method="xgboost")


def test_tables_equal_xgboost_pred_contribs(experiment, leads_frame: pd.DataFrame) -> None:
    head = experiment.bundle.main
    X = head.pre.transform(leads_frame)
    # Add rows that hit the corners: everything missing, unseen category codes, extreme numbers.
    corners = np.full((3, X.shape[1]), np.nan, dtype=np.float32)
    corners[1] = X[0]
    for j, kind in enumerate(head.pre.feature_types):
        corners[1, j] = 99.0 if kind == "c" else 1e9
    corners[2] = -corners[1]
    X = np.vstack([X, corners])
    ours = head.contributions(X)
    np.testing.assert_allclose(ours, _xgb_contribs(head, X), atol=2e-5)
    margin = head.booster.predict(head.dmatrix(X), output_margin=True)
    np.testing.assert_allclose(ours.sum(axis=1), margin, atol=2e-5)


def test_tables_handle_numeric_missing_and_categorical_splits() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    cat = rng.integers(0, 6, n).astype(np.float32)
    num = rng.normal(size=n).astype(np.float32)
    num[rng.random(n) < 0.2] = np.nan
    y = ((cat % 2 == 0) ^ (np.nan_to_num(num) > 0.3)).astype(int)
    X = np.column_stack([cat, num, rng.normal(size=n).astype(np.float32)])
    d = xgb.DMatrix(X, y, feature_types=["c", "q", "q"], enable_categorical=True)
    booster = xgb.train({"max_depth": 3, "max_cat_to_onehot": 1, "objective": "binary:logistic", "nthread": 1}, d, 30)
    explainer = TreeExplainer(booster, 3)
    np.testing.assert_allclose(explainer.shap_values(X), booster.predict(d, pred_contribs=True), atol=2e-5)


def test_deep_trees_are_refused() -> None:
    X = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    booster = xgb.train({"max_depth": 6, "nthread": 1}, xgb.DMatrix(X, y), 5)
    with pytest.raises(TooDeep):
        TreeExplainer(booster, 4)
