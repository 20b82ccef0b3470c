"""Training: from a table of leads with a won/lost label to an evaluated, calibrated model bundle.

Steps (all fitted on the training part only; the holdout is touched once, for the metrics):
1. Label: must be binary (0/1, true/false, yes/no, won/lost, converted/not converted); rows without
   a label are left out and counted.
2. Columns: the id, time and explicitly dropped columns go; the `Preprocessor` infers kinds, cleans
   categories (missing tokens, rare levels merged) and drops constant and identifier-like columns.
3. Leakage guard: a column that on its own separates the label almost perfectly is almost always
   recorded after the outcome (a "closed by" tag, a status). Rule: cross-fitted single-feature
   ROC AUC > 0.97 (each half of the training rows encodes the column by the other half's conversion
   rates, per level or per quantile bin, missing as its own level) -> dropped and reported, unless the
   column is named in `keep`. Columns above 0.90 are kept but listed as suspicious: the guard only
   catches near-perfect separators (X Education's `Tags` scores 0.92), domain knowledge the rest.
4. Booster: the training part is split again into fit (80%) and validation (20%) rows, stratified
   at random or, with a time column, the newest 20% (so validation looks like the future). A few
   candidate hyper-parameter sets each train with early stopping on validation log-loss (up to 3000
   rounds, patience 100); the lowest validation log-loss wins.
5. Calibration: Platt scaling (or isotonic) of the booster margin, fitted on the validation rows.
6. Fit-only head: the same procedure on the fit columns only (always trained when any fit column
   survives step 2; lead models from events always have the built-in fit features); its calibrated
   probability sets the grade, with A-D cut points at the 80/60/40/20th percentiles of its
   predictions on the training rows. With no fit signal at all (no fit columns given, or all of them
   empty or constant) there is no fit head: the grade is then the score's percentile among the
   training rows, and the metadata and report say so (`grade_source` "score").
7. Metrics on the holdout for the model and two baselines: logistic regression (one-hot + scaling,
   same cleaned columns, same rows) and a points scorecard.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from scoring.calibration import fit_calibrator
from scoring.metrics import evaluate
from scoring.model import GRADE_PERCENTILES, Head, ModelBundle, feature_hash
from scoring.phrasing import Phrasing
from scoring.rules import PointsModel, derive_scorecard
from scoring.tabular import DEFAULT_MISSING_TOKENS, Preprocessor

if TYPE_CHECKING:
    from scoring.schema import FeatureSchema

DEFAULT_LEAK_AUC = 0.97
SUSPICIOUS_AUC = 0.90  # reported (not dropped): strong enough that someone should check where it comes from
MAX_ROUNDS = 3000
PATIENCE = 100
BASE_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_cat_to_onehot": 1,  # partition-based splits: a split can group any subset of levels
    "eta": 0.03,
    "subsample": 0.8,
    "colsample_bytree": 0.7,
}
# Small, deliberately different candidates rather than a wide grid (validation rows are few, and a
# wide search would overfit them). Trees stay at depth <= 3: lead data rarely needs deeper
# interactions, and depth-3 trees (<= 7 splits) let scoring.treeshap compute exact reasons from
# lookup tables, several times faster than XGBoost's own pred_contribs.
CANDIDATES: tuple[dict[str, Any], ...] = (
    {"max_depth": 3, "min_child_weight": 2, "lambda": 1.0},
    {"max_depth": 3, "min_child_weight": 5, "lambda": 5.0, "colsample_bytree": 0.5},
    {"max_depth": 2, "min_child_weight": 2, "lambda": 1.0},
)
POSITIVE_WORDS = {"1", "1.0", "true", "yes", "y", "t", "won", "converted", "closed won", "win"}
NEGATIVE_WORDS = {"0", "0.0", "false", "no", "n", "f", "lost", "not converted", "closed lost", "loss"}

Progress = Callable[[str], None]


class TrainingError(ValueError):
    """The input can't be trained on (missing label column, label not binary, too few rows)."""


@dataclass
class TrainOptions:
    """What to train on and how."""

    label: str
    id_column: str | None = None
    time_column: str | None = None
    drop: Sequence[str] = ()
    keep: Sequence[str] = ()
    fit_columns: Sequence[str] = ()
    leak_auc: float = DEFAULT_LEAK_AUC
    test_fraction: float = 0.2
    validation_fraction: float = 0.2
    calibration: str = "platt"
    missing_tokens: Sequence[str] = DEFAULT_MISSING_TOKENS
    scorecard: PointsModel | None = None  # hand-built rules baseline; derived from the data if None
    phrasing: Phrasing | None = None  # column labels and mapped kinds for reasons (from the feature schema)
    nthread: int | None = None  # None: 1 thread below 50,000 rows (OpenMP start-up costs more than it saves)
    kinds: Mapping[str, Any] = field(default_factory=dict)  # column -> Preprocessor kind, instead of inferring
    max_levels: Mapping[str, int] = field(default_factory=dict)  # categorical column -> levels kept (top_n)
    schema: FeatureSchema | None = None  # the feature schema whose mapped features the frame holds


@dataclass
class Experiment:
    """One trained bundle and its holdout metrics against the baselines."""

    bundle: ModelBundle
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    dropped: dict[str, str]
    suspicious: dict[str, float]  # kept, but single-feature AUC above SUSPICIOUS_AUC: check for leakage
    rows: int
    positives: int
    unlabelled_rows: int
    test_probabilities: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


# ---- label and splits ---------------------------------------------------------------------------


def parse_label(frame: pd.DataFrame, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (y as 0/1 ints for labelled rows, boolean mask of labelled rows).

    Raises TrainingError when the column is absent or does not hold exactly two known outcomes.
    """
    if label not in frame.columns:
        raise TrainingError(f"label column {label!r} not found; columns are: {', '.join(map(str, frame.columns))}")
    raw = frame[label]
    labelled = raw.notna().to_numpy()
    if pd.api.types.is_bool_dtype(raw):
        words = raw.astype(str).str.lower()
    else:
        words = raw.astype("object").where(raw.isna(), raw.astype(str).str.strip().str.lower())
    values = set(words[labelled].unique())
    unknown = values - POSITIVE_WORDS - NEGATIVE_WORDS
    if unknown or not values:
        shown = ", ".join(sorted(map(str, values))[:8]) or "(no values)"
        raise TrainingError(f"label column {label!r} is not binary: expected 0/1 (or yes/no, won/lost), found {shown}")
    y = words[labelled].isin(POSITIVE_WORDS).to_numpy().astype(int)
    if y.min() == y.max():
        raise TrainingError(f"label column {label!r} has only one outcome ({'1' if y[0] else '0'}); need both")
    return y, labelled


def split_rows(
    y: np.ndarray, fraction: float, seed: int, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (first, second) with `fraction` in the second part.

    With `order` (a sortable key per row, e.g. a timestamp) the second part is the newest rows;
    otherwise a stratified random split.
    """
    idx = np.arange(len(y))
    if order is not None:
        ranked = idx[np.argsort(order, kind="stable")]
        cut = len(y) - max(1, round(fraction * len(y)))
        return np.sort(ranked[:cut]), np.sort(ranked[cut:])
    first, second = train_test_split(idx, test_size=fraction, stratify=y, random_state=seed)
    return np.sort(first), np.sort(second)


# ---- leakage guard ------------------------------------------------------------------------------


def _encode_by_rates(key_fit: pd.Series, y_fit: np.ndarray, key_eval: pd.Series, prior: float) -> np.ndarray:
    m = 10.0  # smoothing: a level needs ~10 rows before its own rate outweighs the prior
    stats = pd.DataFrame({"k": key_fit.to_numpy(), "y": y_fit}).groupby("k", dropna=False)["y"].agg(["sum", "count"])
    rate = (stats["sum"] + m * prior) / (stats["count"] + m)
    return key_eval.map(rate).fillna(prior).to_numpy(dtype=float)


def _keys(column: pd.Series, kind: str, edges: np.ndarray | None) -> pd.Series:
    if kind in ("numeric", "boolean"):
        values = column.astype(float)
        binned = np.digitize(values.fillna(0).to_numpy(), edges) if edges is not None else values.to_numpy()
        return pd.Series(np.where(values.isna(), -1, binned), index=column.index)
    if kind == "date":
        return column.dt.strftime("%Y-%m").fillna("(missing)")
    return column.astype("object").fillna("(missing)")


def single_feature_auc(column: pd.Series, kind: str, y: np.ndarray, seed: int = 0) -> float:
    """Cross-fitted ROC AUC of one cleaned column used alone (0.5 = useless, 1.0 = perfect separator)."""
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2 or len(y) < 20:
        return 0.5
    a, b = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=seed)
    aucs = []
    for fit_idx, eval_idx in ((a, b), (b, a)):
        edges = None
        if kind in ("numeric", "boolean"):
            vals = column.iloc[fit_idx].astype(float).dropna()
            edges = np.unique(np.quantile(vals, np.linspace(0, 1, 21)[1:-1])) if len(vals) else np.zeros(0)
        key_fit = _keys(column.iloc[fit_idx], kind, edges)
        key_eval = _keys(column.iloc[eval_idx], kind, edges)
        scores = _encode_by_rates(key_fit, y[fit_idx], key_eval, float(y[fit_idx].mean()))
        if len(np.unique(y[eval_idx])) == 2:
            aucs.append(roc_auc_score(y[eval_idx], scores))
    if not aucs:
        return 0.5
    auc = float(np.mean(aucs))
    return max(auc, 1.0 - auc)


def single_feature_aucs(clean: pd.DataFrame, pre: Preprocessor, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Cross-fitted single-feature AUC of every input column."""
    return {spec.name: single_feature_auc(clean[spec.name], spec.kind, y, seed) for spec in pre.columns}


def find_leaks(
    clean: pd.DataFrame, pre: Preprocessor, y: np.ndarray, threshold: float = DEFAULT_LEAK_AUC, seed: int = 0
) -> dict[str, float]:
    """Columns whose single-feature AUC exceeds `threshold`, with that AUC."""
    return {c: auc for c, auc in single_feature_aucs(clean, pre, y, seed).items() if auc > threshold}


# ---- boosters -----------------------------------------------------------------------------------


def fit_head(
    X: np.ndarray,
    y: np.ndarray,
    pre: Preprocessor,
    *,
    seed: int,
    order: np.ndarray | None,
    validation_fraction: float,
    calibration: str,
    nthread: int | None,
    sample_weight: np.ndarray | None = None,
) -> tuple[Head, dict[str, Any]]:
    """Train candidate boosters with early stopping, keep the best, calibrate it on validation rows.

    `sample_weight` (one per row of X) weighs the boosters' fit, the early-stopping loss and the calibration.
    """
    fit_idx, val_idx = split_rows(y, validation_fraction, seed, order)
    names, types = pre.xgb_feature_names, pre.feature_types
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    dfit = xgb.DMatrix(X[fit_idx], y[fit_idx], feature_names=names, feature_types=types, enable_categorical=True,
                       weight=None if w is None else w[fit_idx])
    dval = xgb.DMatrix(X[val_idx], y[val_idx], feature_names=names, feature_types=types, enable_categorical=True,
                       weight=None if w is None else w[val_idx])
    if nthread is None:
        nthread = 1 if len(y) < 50_000 else 2
    best: tuple[float, xgb.Booster, dict[str, Any]] | None = None
    for candidate in CANDIDATES:
        params = {**BASE_PARAMS, **candidate, "seed": seed, "nthread": nthread}
        booster = xgb.train(
            params, dfit, MAX_ROUNDS, evals=[(dval, "validation")], early_stopping_rounds=PATIENCE, verbose_eval=False
        )
        loss = float(booster.best_score)
        if best is None or loss < best[0]:
            best = (loss, booster, params)
    assert best is not None
    loss, booster, params = best
    # Keep only the trees up to the best round: smaller files, and nothing later can use the rest.
    booster = booster[: int(booster.best_iteration) + 1]
    best_iteration = booster.num_boosted_rounds() - 1
    margin_val = booster.predict(dval, output_margin=True)
    calibrator = fit_calibrator(margin_val, y[val_idx], calibration,  # type: ignore[arg-type]
                                sample_weight=None if w is None else w[val_idx])
    head = Head(booster=booster, pre=pre, calibrator=calibrator, best_iteration=best_iteration)
    info = {
        "params": {k: v for k, v in params.items() if k != "nthread"},
        "best_iteration": best_iteration,
        "validation_logloss": loss,
        "fit_rows": len(fit_idx),
        "validation_rows": len(val_idx),
    }
    return head, info


# ---- baselines ----------------------------------------------------------------------------------


def _baseline_frame(clean: pd.DataFrame, pre: Preprocessor) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Cleaned columns as the logistic regression sees them (dates as their numeric parts)."""
    out: dict[str, pd.Series] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    for spec in pre.columns:
        series = clean[spec.name]
        if spec.kind == "categorical":
            out[spec.name] = series.astype("object").fillna("(missing)").astype(str)
            categorical.append(spec.name)
        elif spec.kind == "date":
            parts = {"dow": series.dt.day_of_week, "month": series.dt.month, "hour": series.dt.hour}
            for part in spec.date_parts:
                name = f"{spec.name} ({part})"
                out[name] = parts[part].astype(float)
                numeric.append(name)
        else:
            out[spec.name] = series.astype(float)
            numeric.append(spec.name)
    return pd.DataFrame(out, index=clean.index), numeric, categorical


def logistic_baseline(
    clean_train: pd.DataFrame, y_train: np.ndarray, clean_test: pd.DataFrame, pre: Preprocessor
) -> np.ndarray:
    """Logistic regression on one-hot categoricals and scaled, median-imputed numbers; test probabilities."""
    train, numeric, categorical = _baseline_frame(clean_train, pre)
    test, _, _ = _baseline_frame(clean_test, pre)
    # An all-missing numeric column would make the imputer drop it; fill those with 0 first.
    for col in numeric:
        if train[col].isna().all():
            train[col] = 0.0
            test[col] = 0.0
    transformers = []
    if numeric:
        transformers.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if categorical:
        transformers.append(("cat", OneHotEncoder(handle_unknown="ignore"), categorical))
    model = make_pipeline(ColumnTransformer(transformers), LogisticRegression(max_iter=5000, C=1.0))
    model.fit(train, y_train)
    return model.predict_proba(test)[:, 1]


def scorecard_for(clean_train: pd.DataFrame, y_train: np.ndarray, pre: Preprocessor, given: PointsModel | None) -> PointsModel:
    """The rules baseline: the hand-built scorecard if given, else one derived column by column."""
    if given is not None:
        return given
    return derive_scorecard(clean_train, y_train, {s.name: s.kind for s in pre.columns})


# ---- the whole run ------------------------------------------------------------------------------


def _time_order(frame: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if column is None:
        return None
    if column not in frame.columns:
        raise TrainingError(f"time column {column!r} not found")
    ts = pd.to_datetime(frame[column], errors="coerce", format="mixed", utc=True)
    if ts.isna().mean() > 0.5:
        raise TrainingError(f"time column {column!r}: most values are not dates")
    # Undated rows sort first (oldest), so they never land in the "future" holdout.
    return ts.fillna(pd.Timestamp.min.tz_localize("UTC")).astype("int64").to_numpy()


def run_experiment(
    frame: pd.DataFrame,
    options: TrainOptions,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    now: datetime | None = None,
    sample_weight: Sequence[float] | np.ndarray | None = None,
) -> Experiment:
    """Train on a holdout split of `frame`, evaluate model and baselines on the holdout, return all of it.

    `sample_weight` (one per row of `frame`, e.g. scoring.replay.edr_weights) weighs the boosters and their
    calibration; the holdout metrics and the baselines stay unweighted, so they compare like with like.
    """
    step = progress or (lambda _msg: None)
    missing = [c for c in (options.id_column, *options.fit_columns, *options.keep) if c and c not in frame.columns]
    if missing:
        raise TrainingError(f"column(s) not found: {', '.join(missing)}")
    y_all, labelled = parse_label(frame, options.label)
    data = frame.loc[labelled].reset_index(drop=True)
    weights: np.ndarray | None = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=float)
        if weights.shape != (len(frame),) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise TrainingError("sample_weight needs one finite, non-negative weight per row of the frame")
        weights = weights[labelled]
    if len(data) < 50:
        raise TrainingError(f"only {len(data)} labelled rows; need at least 50")
    dropped: dict[str, str] = {}
    for col in options.drop:
        if col in data.columns:
            dropped[col] = "dropped on request"
    order = _time_order(data, options.time_column)
    excluded = {options.label, *options.drop}
    if options.id_column:
        excluded.add(options.id_column)
        dropped[options.id_column] = "id column"
    if options.time_column:
        excluded.add(options.time_column)
        dropped[options.time_column] = "time column (used to order the split)"
    features = data[[c for c in data.columns if c not in excluded]]

    step("split")
    train_idx, test_idx = split_rows(y_all, options.test_fraction, seed, order)
    y_train, y_test = y_all[train_idx], y_all[test_idx]
    raw_train, raw_test = features.iloc[train_idx], features.iloc[test_idx]
    order_train = order[train_idx] if order is not None else None
    w_train = weights[train_idx] if weights is not None else None

    step("preprocess")
    pre = Preprocessor.fit(raw_train, missing_tokens=options.missing_tokens,
                           kinds={k: v for k, v in options.kinds.items() if k in raw_train.columns} or None,
                           column_max_levels=options.max_levels or None)
    dropped.update(pre.dropped)
    clean_train = pre.clean(raw_train)
    aucs = single_feature_aucs(clean_train, pre, y_train, seed)
    leaks = {c: auc for c, auc in aucs.items() if auc > options.leak_auc and c not in set(options.keep)}
    suspicious = {c: round(auc, 4) for c, auc in aucs.items() if SUSPICIOUS_AUC < auc and c not in leaks}
    if leaks:
        for col, auc in leaks.items():
            dropped[col] = f"leak guard: single-feature AUC {auc:.3f} > {options.leak_auc}"
        pre = pre.without(leaks, "leak guard")
        pre.dropped.update({c: dropped[c] for c in leaks})
        clean_train = clean_train.drop(columns=list(leaks))
    if not pre.columns:
        raise TrainingError("no usable feature columns left after dropping ids, constants and leaks")
    clean_test = pre.clean(raw_test)
    X_train = pre.matrix_from_clean(clean_train)
    X_test = pre.matrix_from_clean(clean_test)

    step("boosters")
    main, main_info = fit_head(
        X_train, y_train, pre, seed=seed, order=order_train, validation_fraction=options.validation_fraction,
        calibration=options.calibration, nthread=options.nthread, sample_weight=w_train,
    )
    fit_head_obj: Head | None = None
    fit_info: dict[str, Any] | None = None
    grade_thresholds: list[float] = []
    fit_cols = [c for c in options.fit_columns if c in pre.input_columns]
    if fit_cols:
        fit_pre = pre.only(fit_cols)
        X_fit = fit_pre.matrix_from_clean(clean_train)
        fit_head_obj, fit_info = fit_head(
            X_fit, y_train, fit_pre, seed=seed, order=order_train, validation_fraction=options.validation_fraction,
            calibration=options.calibration, nthread=options.nthread, sample_weight=w_train,
        )
        grade_thresholds = grade_cut_points(fit_head_obj.proba(X_fit))

    step("evaluate")
    p_test = main.proba(X_test)
    metrics = evaluate(y_test, p_test)
    p_lr = logistic_baseline(clean_train, y_train, clean_test, pre)
    scorecard = scorecard_for(clean_train, y_train, pre, options.scorecard)
    p_rules = scorecard.score_frame(clean_test) / 100.0
    baselines = {"logistic_regression": evaluate(y_test, p_lr), "rules": evaluate(y_test, p_rules)}
    train_p = main.proba(X_train)
    grade_source = "fit" if fit_head_obj is not None else "score"
    if fit_head_obj is None:
        grade_thresholds = grade_cut_points(train_p)
    when = now or datetime.now(UTC)
    fhash = feature_hash(pre)
    window = None
    if options.time_column:
        ts = pd.to_datetime(data[options.time_column].iloc[train_idx], errors="coerce", format="mixed", utc=True)
        window = {"start": ts.min().isoformat() if ts.notna().any() else None,
                  "end": ts.max().isoformat() if ts.notna().any() else None}
    metadata: dict[str, Any] = {
        "version": f"{when:%Y%m%dT%H%M%S}-{fhash[:8]}",
        "trained_at": when.isoformat(),
        "label": options.label,
        "features": pre.feature_names,
        "feature_hash": fhash,
        "params": main_info["params"],
        "training": {
            **main_info,
            "rows": len(train_idx),
            "positives": int(y_train.sum()),
            "holdout_rows": len(test_idx),
            "split": "time-ordered" if order is not None else f"stratified random (seed {seed})",
            "window": window,
            "weighted": weights is not None,
        },
        "outcomes": {"labelled": len(data), "positives": int(y_all.sum())},
        "fit_training": fit_info,
        "fit_columns": fit_cols,
        "metrics": metrics,
        "baselines": baselines,
        "dropped_columns": dropped,
        "suspicious_columns": suspicious,
        "grade_thresholds": grade_thresholds,
        "grade_source": grade_source,
        "grades": grades_note(grade_source, fit_cols, list(options.fit_columns)),
        "phrasing": _phrasing_of(options, pre.input_columns).to_json(),
        "score_percentiles": [float(v) for v in np.quantile(train_p, np.linspace(0, 1, 101))],
        "scorecard": scorecard.to_json(),
    }
    if options.schema is not None:
        metadata["feature_schema"] = schema_meta(options.schema, pre.input_columns)
    bundle = ModelBundle(main=main, fit=fit_head_obj, metadata=metadata)
    return Experiment(
        bundle=bundle, metrics=metrics, baselines=baselines, dropped=dropped, suspicious=suspicious, rows=len(data),
        positives=int(y_all.sum()), unlabelled_rows=int((~labelled).sum()), test_probabilities=p_test,
    )


def grade_cut_points(p: np.ndarray) -> list[float]:
    """A/B/C/D cut points: the 80/60/40/20th percentiles of the training rows' probabilities."""
    return [float(np.quantile(np.asarray(p, dtype=float), q / 100)) for q in GRADE_PERCENTILES]


def grades_note(source: str, used: Sequence[str], asked: Sequence[str]) -> str:
    """One sentence for the model report: where this model's grades come from."""
    if source == "fit":
        return f"grades A-F rank the fit head's probability (fit columns: {', '.join(used)})"
    if asked:
        return ("no fit signal (the fit columns " + ", ".join(asked) + " were empty or constant): grades A-F are "
                "the score's percentile among the training rows (A: top 20%)")
    return "no fit columns: grades A-F are the score's percentile among the training rows (A: top 20%)"


def _phrasing_of(options: TrainOptions, columns: Sequence[str]) -> Phrasing:
    """The reasons' labels and kinds: the schema's mapped fields the model reads, then the caller's own."""
    from scoring.schema import used_fields

    mapped = Phrasing.from_fields(used_fields(options.schema, list(columns))) if options.schema else Phrasing()
    return mapped.merged(options.phrasing) if options.phrasing is not None else mapped


def schema_meta(schema: FeatureSchema, columns: Sequence[str]) -> dict[str, Any]:
    """What a bundle records of the schema it was trained under: version, fingerprint, the mapped fields it reads."""
    from scoring.schema import used_fields

    return {"version": schema.version, "fingerprint": schema.fingerprint,
            "fields": [f.to_json() for f in used_fields(schema, list(columns))]}


def report_of(experiment: Experiment) -> dict[str, Any]:
    """The JSON report shape shared by `leadbridge train` and bench/model."""
    return {
        "rows": experiment.rows,
        "positives": experiment.positives,
        "version": experiment.bundle.version,
        "dropped_columns": experiment.dropped,
        "suspicious_columns": experiment.suspicious,
        "model": experiment.metrics,
        "baselines": experiment.baselines,
        "grades": experiment.bundle.metadata.get("grades"),
    }


def is_finite(value: float) -> bool:
    """True for a real, finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value)
