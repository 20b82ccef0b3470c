"""Scoring-speed benchmark: one lead (score + grade + reasons) latency, batch throughput, memory.

    python -m bench.scoring --json bench/out/scoring.json
    python -m bench.scoring --csv FILE --label COL [--drop ...] [--fit-columns ...] --json FILE
    python -m bench.scoring --model BUNDLE_DIR --csv FILE --json FILE     (skip training)

It trains a model the way `leadbridge train` does (default: the X Education file with fit columns
Country, City, Specialization and occupation, so grades are computed too), then measures in the same
run, on the same rows:
- ours: lookup-table TreeSHAP (scoring.treeshap, exact) for reasons and margins;
- baseline: XGBoost's exact `pred_contribs` through the same preprocessing;
- reference only: XGBoost's Saabas approximation (`approx_contribs`), to show what "fast but
  approximate" would cost in reason agreement.
Reasons agreement = share of leads whose top-3 positive and top-3 negative feature sets are
identical to XGBoost's exact TreeSHAP. Memory is the peak RSS of a fresh process that imports only
what a scoring worker needs, loads the bundle and scores the whole batch with reasons.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench._table import console, fmt, run_and_report
from bench.model import DEFAULT_CSV, DEFAULT_DROP, DEFAULT_LABEL
from scoring.model import ModelBundle
from scoring.reasons import agreement, reason_sets, top_contributions_batch
from scoring.scorer import Scorer, score, score_frame
from scoring.training import TrainingError, TrainOptions, parse_label, run_experiment

LEARN_ROWS = 3000  # labels the online challenger learns before it is timed predicting
SINGLE_ONLINE = 2000
DEFAULT_FIT = ("Country", "City", "Specialization", "What is your current occupation")
TARGETS = {"single_p99_ms": 5.0, "batch_leads_per_s": 5000.0, "reasons_agreement": 0.95, "rss_mb": 300.0}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", type=Path, default=None, help=f"CSV of leads (default {DEFAULT_CSV})")
    p.add_argument("--label", default=DEFAULT_LABEL)
    p.add_argument("--drop", nargs="*", default=None, help="columns to leave out (default: the X Education leaks)")
    p.add_argument("--fit-columns", nargs="*", default=None, help="fit-only model columns (default: X Education's)")
    p.add_argument("--model", type=Path, default=None, help="use this bundle directory instead of training")
    p.add_argument("--single", type=int, default=2000, help="single-lead calls to time (default 2000)")
    p.add_argument("--batch-rows", type=int, default=20000, help="rows in the batch (sampled from the file)")
    p.add_argument("--json", dest="json_path", type=Path, default=None)
    return p.parse_args(argv)


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]


def _percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, q))


# What a scoring worker holds: the bundle, pandas, and the scorer; nothing of training or benchmarks.
PROBE = """
import json, sys
import pandas as pd
import psutil
from scoring.model import ModelBundle
from scoring.scorer import score, score_frame
bundle = ModelBundle.load(sys.argv[1]).warm()
frame = pd.read_csv(sys.argv[2], dtype=str)
score_frame(frame, bundle)
for row in frame.head(200).to_dict("records"):
    score({k: (None if pd.isna(v) else v) for k, v in row.items()}, bundle)
# VmHWM is this address space's high-water mark; ru_maxrss would carry the parent's over fork+exec.
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1), "peak_rss_mb": round(hwm_kb / 1024, 1)}))
"""


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or load), then time single and batch scoring for ours and the baseline."""
    csv = args.csv or DEFAULT_CSV
    if not csv.is_file():
        raise TrainingError(f"CSV file not found: {csv}")
    default_file = args.csv is None or csv.resolve() == DEFAULT_CSV.resolve()
    frame = pd.read_csv(csv, dtype=str)
    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    try:
        return _measure(args, csv, default_file, frame, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(args: argparse.Namespace, csv: Path, default_file: bool, frame: pd.DataFrame, work: Path) -> dict[str, Any]:
    """The measurements themselves; `work` is a scratch directory for the bundle and the batch CSV."""
    out = console()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=out) as progress:
        task = progress.add_task("model", total=7)
        if args.model is not None:
            bundle = ModelBundle.load(args.model).warm()
        else:
            drop = tuple(args.drop) if args.drop is not None else (DEFAULT_DROP if default_file else ())
            fit = tuple(args.fit_columns) if args.fit_columns is not None else (DEFAULT_FIT if default_file else ())
            exp = run_experiment(frame, TrainOptions(label=args.label, drop=drop, fit_columns=fit), seed=0)
            bundle = ModelBundle.load(exp.bundle.save(work / "bundle")).warm()  # what a worker would load
        bundle_dir = str(args.model or (work / "bundle"))
        progress.update(task, advance=1, description="batch data")
        rng = np.random.default_rng(0)
        batch = frame.iloc[rng.integers(0, len(frame), args.batch_rows)].reset_index(drop=True)
        batch_csv = work / "batch.csv"
        batch.to_csv(batch_csv, index=False)
        rows = _rows(frame.sample(n=min(len(frame), args.single), replace=len(frame) < args.single, random_state=1))

        progress.update(task, advance=1, description="single lead: ours")
        for row in rows[:50]:  # warm-up: explainer tables, caches
            score(row, bundle)
        ours_single: list[float] = []
        for row in rows:
            t = time.perf_counter()
            score(row, bundle)
            ours_single.append(time.perf_counter() - t)

        progress.update(task, advance=1, description="single lead: baseline (xgboost pred_contribs)")
        base_single: list[float] = []
        one_rows = [pd.DataFrame([r]) for r in rows[: max(200, len(rows) // 5)]]
        for df1 in one_rows[:20]:
            score_frame(df1, bundle, reasons="xgboost")
        for df1 in one_rows:
            t = time.perf_counter()
            score_frame(df1, bundle, reasons="xgboost")
            base_single.append(time.perf_counter() - t)

        progress.update(task, advance=1, description="batch: ours vs baseline")
        timings: dict[str, float] = {}
        for method in ("exact", "xgboost", "approx"):
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                score_frame(batch, bundle, reasons=method)  # type: ignore[arg-type]
                best = min(best, time.perf_counter() - t)
            timings[method] = len(batch) / best

        progress.update(task, advance=1, description="reasons agreement")
        X = bundle.main.pre.transform(batch)
        exact_sets = reason_sets(*top_contributions_batch(bundle.main.contributions(X, "xgboost")))
        ours_sets = reason_sets(*top_contributions_batch(bundle.main.contributions(X, "auto")))
        approx_sets = reason_sets(*top_contributions_batch(bundle.main.contributions(X, "approx")))
        agree = agreement(ours_sets, exact_sets)
        agree_approx = agreement(approx_sets, exact_sets)

        progress.update(task, advance=1, description="online challenger: learn, then blend")
        online = {kind: _online_cost(kind, frame, args.label, rows, batch, bundle) for kind in ("linear", "hat", "arf")}

        progress.update(task, advance=1, description="memory (fresh process)")
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, bundle_dir, str(batch_csv)],
            capture_output=True, text=True, check=True,
        )
        memory = json.loads(probe.stdout.strip().splitlines()[-1])
        progress.update(task, advance=1, description="done")

    return {
        "single_p99_ms": _percentile_ms(ours_single, 99),
        "batch_leads_per_s": timings["exact"],
        "reasons_agreement": agree,
        "rss_mb": memory["peak_rss_mb"],
        "single_p50_ms": _percentile_ms(ours_single, 50),
        "rss_after_scoring_mb": memory["rss_mb"],
        "baseline": {
            "method": "xgboost pred_contribs (exact TreeSHAP)",
            "single_p50_ms": _percentile_ms(base_single, 50),
            "single_p99_ms": _percentile_ms(base_single, 99),
            "batch_leads_per_s": timings["xgboost"],
            "reasons_agreement": 1.0,
        },
        "saabas_approx": {"batch_leads_per_s": timings["approx"], "reasons_agreement": agree_approx},
        "online": online,
        "method": "lookup-table exact TreeSHAP (scoring.treeshap)",
        "model_version": bundle.version,
        "trees": bundle.main.best_iteration + 1,
        "has_fit_model": bundle.fit is not None,
        "single_calls": len(ours_single),
        "batch_rows": len(batch),
        "csv": str(csv),
    }


def _online_cost(kind: str, frame: pd.DataFrame, label: str, rows: list[dict[str, Any]], batch: pd.DataFrame,
                 bundle: ModelBundle) -> dict[str, Any]:
    """What the online challenger costs: learning one label, and scoring with the blend it serves as (the
    champion's batch with reasons, plus one online prediction and a log-odds blend per lead)."""
    from scoring.online import OnlineModel

    columns = [c for c in frame.columns if c != label]
    model = OnlineModel(kind, columns=columns)
    y = parse_label(frame, label)[0]
    train = _rows(frame[columns])[:LEARN_ROWS]
    learn: list[float] = []
    for x, target in zip(train, y[:LEARN_ROWS]):
        t = time.perf_counter()
        model.learn(x, bool(target))
        learn.append(time.perf_counter() - t)
    single: list[float] = []
    for row in rows[:SINGLE_ONLINE]:
        t = time.perf_counter()
        model.predict_proba(row)
        single.append(time.perf_counter() - t)
    scorer = Scorer(bundle, min_outcomes=1, min_positives=1, online=model, online_weight=0.5, online_version=kind)
    vectors = batch.to_dict("records")
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        scored = score_frame(batch, bundle, reasons="exact")
        scorer.blend(scored.probabilities, vectors)
        best = min(best, time.perf_counter() - t)
    return {"learned": len(learn), "learn_p50_ms": _percentile_ms(learn, 50), "learn_p99_ms": _percentile_ms(learn, 99),
            "predict_p50_ms": _percentile_ms(single, 50), "predict_p99_ms": _percentile_ms(single, 99),
            "blend_batch_leads_per_s": len(batch) / best}


def show(report: dict[str, Any]) -> None:
    """Print the comparison table and the targets."""
    out = console()
    table = Table(title=f"scoring speed — model {report['model_version']} ({report['trees']} trees), "
                        f"{report['batch_rows']:,}-lead batch, {report['single_calls']:,} single calls")
    for col in ("method", "single p50 ms", "single p99 ms", "batch leads/s", "reasons agreement"):
        table.add_column(col, justify="right" if col != "method" else "left")
    b = report["baseline"]
    table.add_row("ours: table TreeSHAP (exact)", fmt(report["single_p50_ms"], 3), fmt(report["single_p99_ms"], 3),
                  f"{report['batch_leads_per_s']:,.0f}", fmt(report["reasons_agreement"], 4))
    table.add_row("baseline: xgboost pred_contribs", fmt(b["single_p50_ms"], 3), fmt(b["single_p99_ms"], 3),
                  f"{b['batch_leads_per_s']:,.0f}", "1.0000 (reference)")
    s = report["saabas_approx"]
    table.add_row("reference: xgboost Saabas approx", "", "", f"{s['batch_leads_per_s']:,.0f}",
                  fmt(s["reasons_agreement"], 4))
    out.print(table)
    online = Table(title="online challenger (River; learned on the first rows, then serving as a blend with the model)")
    for col in ("model", "learn p50 ms", "learn p99 ms", "predict p50 ms", "predict p99 ms", "blend batch leads/s"):
        online.add_column(col, justify="right" if col != "model" else "left")
    for kind, o in report["online"].items():
        online.add_row(kind, fmt(o["learn_p50_ms"], 3), fmt(o["learn_p99_ms"], 3), fmt(o["predict_p50_ms"], 3),
                       fmt(o["predict_p99_ms"], 3), f"{o['blend_batch_leads_per_s']:,.0f}")
    out.print(online)
    checks = Table(title="targets")
    for col in ("check", "target", "measured", "ok"):
        checks.add_column(col)
    for key, label, target, ok in (
        ("single_p99_ms", "one lead p99 (score+grade+reasons)", "<= 5 ms", report["single_p99_ms"] <= 5.0),
        ("batch_leads_per_s", "batch with reasons", ">= 5,000 leads/s", report["batch_leads_per_s"] >= 5000),
        ("reasons_agreement", "top-3 reasons = exact TreeSHAP", ">= 0.95", report["reasons_agreement"] >= 0.95),
        ("rss_mb", "peak RSS, model loaded + batch scored", "<= 300 MB", report["rss_mb"] <= 300),
    ):
        checks.add_row(label, target, fmt(report[key], 3), "yes" if ok else "[red]NO[/red]")
    out.print(checks)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_and_report(parse_args(argv), run, show, (TrainingError, OSError, subprocess.CalledProcessError),
                          _describe)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        return f"memory probe failed: {exc.stderr[-500:]}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
