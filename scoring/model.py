"""The model bundle: booster(s), preprocessing vocabulary, calibrator and metadata, saved without pickle.

On disk a bundle is a directory:
    model.ubj        the main booster in XGBoost's own UBJSON format
    fit_model.ubj    the fit-only booster (only when fit columns were given)
    metadata.json    feature list and hash, params, metrics, training window, trained_at, calibrators
                     (plain numbers), grade thresholds, score percentiles and the preprocessing vocabulary
Loading it back gives the same numbers bit for bit: nothing depends on the Python objects that trained it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from scoring.calibration import Calibrator
from scoring.phrasing import Phrasing
from scoring.tabular import FALSE_WORDS, OTHER_LEVEL, TRUE_WORDS, Preprocessor
from scoring.treeshap import TooDeep, TreeExplainer

BUNDLE_FORMAT = 1
MAIN_FILE = "model.ubj"
FIT_FILE = "fit_model.ubj"
META_FILE = "metadata.json"
GRADES = ("A", "B", "C", "D", "F")
GRADE_PERCENTILES = (80, 60, 40, 20)  # A: top 20% of training rows, B: next 20%, ... F: bottom 20%


class BundleError(Exception):
    """A model bundle is missing, incomplete or unreadable."""


def feature_hash(pre: Preprocessor) -> str:
    """Stable hash of the feature space (names, kinds, vocabularies): equal hash, interchangeable inputs."""
    payload = json.dumps([c.to_json() for c in pre.columns], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class Head:
    """One booster with its preprocessing and calibrator (the main model or the fit-only model)."""

    booster: xgb.Booster
    pre: Preprocessor
    calibrator: Calibrator
    best_iteration: int
    _codes: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        # Per-column lookup tables for the fast single-row path (`vector`).
        self._codes = []
        for spec in self.pre.columns:
            if spec.kind == "categorical":
                table = {level: float(i) for i, level in enumerate(spec.levels)}
                self._codes.append(table)
            else:
                self._codes.append(None)
        self._tokens = {t.strip() for t in self.pre.missing_tokens}
        self._n_features = len(self.pre.feature_names)
        self._explainer: TreeExplainer | None | bool = False  # False: not built yet

    @property
    def explainer(self) -> TreeExplainer | None:
        """Lookup-table TreeSHAP for this booster, or None when its trees are too deep for tables."""
        if self._explainer is False:
            try:
                booster = self.booster
                if booster.num_boosted_rounds() != self.best_iteration + 1:
                    booster = booster[: self.best_iteration + 1]
                self._explainer = TreeExplainer(booster, self._n_features)
            except TooDeep:
                self._explainer = None
        return self._explainer  # type: ignore[return-value]

    def dmatrix(self, X: np.ndarray) -> xgb.DMatrix:
        """Wrap a model matrix with this head's feature names and types."""
        return xgb.DMatrix(
            X, feature_names=self.pre.xgb_feature_names, feature_types=self.pre.feature_types, enable_categorical=True,
            nthread=-1,
        )

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw booster margins (log-odds before calibration).

        With lookup tables available the margin is read from them (it equals the sum of the
        contributions and agrees with XGBoost's predict to ~1e-6).
        """
        if X.shape[0] == 0:
            return np.zeros(0)
        if self.explainer is not None:
            return self.explainer.margin(X)
        return self.booster.predict(self.dmatrix(X), output_margin=True, iteration_range=(0, self.best_iteration + 1))

    def proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities."""
        return self.calibrator.apply(self.margin(X))

    def contributions(self, X: np.ndarray, method: str = "auto") -> np.ndarray:
        """Per-feature TreeSHAP contributions (last column is the bias), in margin units.

        method: "auto" (lookup tables when the trees allow, else XGBoost), "xgboost" (exact
        `pred_contribs`), "approx" (XGBoost's Saabas approximation, for comparison only).
        """
        if method == "auto" and self.explainer is not None:
            return self.explainer.shap_values(X)
        return self.booster.predict(
            self.dmatrix(X), pred_contribs=True, approx_contribs=(method == "approx"),
            iteration_range=(0, self.best_iteration + 1),
        )

    def vector(self, row: Mapping[str, Any]) -> np.ndarray:
        """Model vector for one row given as a mapping; same result as `pre.transform` on a one-row frame."""
        out = np.full(self._n_features, np.nan, dtype=np.float32)
        i = 0
        for spec, codes in zip(self.pre.columns, self._codes):
            value = row.get(spec.name)
            if isinstance(value, str):
                value = value.strip()
                if value in self._tokens:
                    value = None
            elif isinstance(value, float) and math.isnan(value):
                value = None
            if spec.kind == "categorical":
                if value is not None:
                    out[i] = codes.get(str(value), float(len(spec.levels)))
                i += 1
            elif spec.kind == "boolean":
                if value is not None:
                    if isinstance(value, str):
                        word = value.lower()
                        out[i] = 1.0 if word in TRUE_WORDS else 0.0 if word in FALSE_WORDS else np.nan
                    else:
                        out[i] = float(value)
                i += 1
            elif spec.kind == "numeric":
                if value is not None:
                    try:
                        out[i] = float(str(value).replace(",", "")) if isinstance(value, str) else float(value)
                    except ValueError:
                        pass
                i += 1
            else:
                parts = spec.date_parts
                if value is not None:
                    ts = pd.to_datetime(value, errors="coerce", utc=True)
                    if not pd.isna(ts):
                        lookup = {"dow": ts.day_of_week, "month": ts.month, "hour": ts.hour}
                        for j, part in enumerate(parts):
                            out[i + j] = float(lookup[part])
                i += len(parts)
        return out


@dataclass
class ModelBundle:
    """Everything needed to score: main head, optional fit-only head, thresholds and metadata."""

    main: Head
    fit: Head | None
    metadata: dict[str, Any]
    _fit_columns: np.ndarray | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        """The bundle's version string."""
        return str(self.metadata["version"])

    @property
    def grade_thresholds(self) -> list[float]:
        """Cut points for grades A, B, C, D (descending); below the last is F. See `grade_source`."""
        stored = [float(v) for v in self.metadata.get("grade_thresholds") or []]
        if self.grade_source == "fit":
            return stored
        if self.metadata.get("grade_source") == "score" and stored:
            return stored
        # A bundle saved before grades had a fallback: its score percentiles give the same cut points.
        q = self.score_percentiles
        if q.size == 101:
            return [float(q[i]) for i in GRADE_PERCENTILES]
        return [p / 100 for p in GRADE_PERCENTILES]

    @property
    def grade_source(self) -> str:
        """'fit': grades rank the fit head's probability; 'score': no fit head, grades rank the main score."""
        if self.fit is not None and self.metadata.get("grade_thresholds"):
            return "fit"
        return "score"

    @property
    def phrasing(self) -> Phrasing:
        """Column labels and mapped kinds the reasons use (recorded at training; empty for plain CSV models)."""
        return Phrasing.from_json(self.metadata.get("phrasing"))

    @property
    def score_percentiles(self) -> np.ndarray:
        """101 quantiles of the training score distribution, for percentile mode."""
        return np.asarray(self.metadata.get("score_percentiles", []), dtype=float)

    def fit_matrix(self, X_main: np.ndarray, frame: pd.DataFrame | None = None) -> np.ndarray | None:
        """The fit head's matrix, taken from the main matrix's columns (the fit columns are a subset)."""
        if self.fit is None:
            return None
        if self._fit_columns is None:
            main_specs = {spec.name: spec for spec in self.main.pre.columns}
            same = all(main_specs.get(spec.name) == spec for spec in self.fit.pre.columns)
            names = self.main.pre.feature_names
            self._fit_columns = (
                np.array([names.index(n) for n in self.fit.pre.feature_names], dtype=int) if same else np.zeros(0, int)
            )
        if self._fit_columns.size:
            return X_main[:, self._fit_columns]
        if frame is None:
            raise ValueError("the fit model's features are not a subset of the main model's; pass the input rows")
        return self.fit.pre.transform(frame)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated conversion probabilities for raw input rows."""
        return self.main.proba(self.main.pre.transform(frame))

    def save(self, directory: str | Path) -> Path:
        """Write the bundle to `directory` (created if needed); returns the directory."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.main.booster.save_model(str(path / MAIN_FILE))
        if self.fit is not None:
            self.fit.booster.save_model(str(path / FIT_FILE))
        meta = dict(self.metadata)
        meta["format"] = BUNDLE_FORMAT
        meta["main"] = _head_meta(self.main)
        meta["fit"] = _head_meta(self.fit) if self.fit is not None else None
        tmp = path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(_jsonable(meta), indent=2, sort_keys=True))
        tmp.replace(path / META_FILE)  # metadata last and atomically: its presence marks a complete bundle
        return path

    def warm(self) -> ModelBundle:
        """Build the TreeSHAP lookup tables now (a worker does this once, not on its first lead)."""
        for head in (self.main, self.fit):
            if head is not None:
                _ = head.explainer
        return self

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        """Read a bundle written by `save` (call `warm()` before serving latency-sensitive traffic)."""
        path = Path(directory)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise BundleError(f"no model bundle at {path} (missing {META_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"unreadable {meta_path}: {exc}") from exc
        if meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"unsupported bundle format {meta.get('format')!r} at {path}")
        main = _load_head(path / MAIN_FILE, meta["main"])
        fit = _load_head(path / FIT_FILE, meta["fit"]) if meta.get("fit") else None
        return cls(main=main, fit=fit, metadata=meta)


def _head_meta(head: Head | None) -> dict[str, Any] | None:
    if head is None:
        return None
    return {
        "features": head.pre.feature_names,
        "input_columns": head.pre.input_columns,
        "feature_hash": feature_hash(head.pre),
        "best_iteration": head.best_iteration,
        "calibrator": head.calibrator.to_json(),
        "preprocessing": head.pre.to_json(),
    }


def _load_head(file: Path, meta: Mapping[str, Any]) -> Head:
    if not file.is_file():
        raise BundleError(f"model file {file} is missing")
    booster = xgb.Booster()
    try:
        booster.load_model(str(file))
    except xgb.core.XGBoostError as exc:
        raise BundleError(f"cannot read {file}: {exc}") from exc
    pre = Preprocessor.from_json(meta["preprocessing"])
    if feature_hash(pre) != meta["feature_hash"]:
        raise BundleError(f"feature hash mismatch for {file}: metadata was edited or is from another model")
    return Head(booster=booster, pre=pre, calibrator=Calibrator.from_json(meta["calibrator"]),
                best_iteration=int(meta["best_iteration"]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating,)):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    return value


__all__ = ["GRADES", "GRADE_PERCENTILES", "OTHER_LEVEL", "BundleError", "Head", "ModelBundle", "feature_hash"]
