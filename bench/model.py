"""Model-quality benchmark: XGBoost bundle vs logistic regression vs a points scorecard, over seeds.

    python -m bench.model --json bench/out/model.json
    python -m bench.model --csv FILE --label COL [--drop COL ...] [--keep COL ...] [--id COL] [--time COL]
                          [--seeds 5] [--scorecard rules.json] --json FILE

Each seed draws a stratified 20% holdout (or, with --time, the newest 20%); the model trains on the
rest exactly as `leadbridge train` does, and all three are scored on the same holdout rows. With no
--csv it reads the X Education file next to the repository (../shared/data/x_education/Leads.csv)
with its leaky columns dropped (see that folder's README) and `Last Activity` kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench._table import console, fmt, metrics_table, run_and_report
from scoring.metrics import mean_metrics
from scoring.rules import PointsModel
from scoring.training import TrainingError, TrainOptions, report_of, run_experiment

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "x_education" / "Leads.csv"
DEFAULT_LABEL = "Converted"
# Filled in by sales after contact, or describing the state after the outcome (see the data README).
DEFAULT_DROP = (
    "Prospect ID",
    "Lead Number",
    "Tags",
    "Lead Quality",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
    "Last Notable Activity",
)
TARGETS = {"roc_auc": 0.900, "margin_over_lr": 0.005, "ece": 0.03, "lift_at_10": 2.45}

# A hand-built scorecard for the X Education file, written the way a marketing-ops admin would from
# the form's meaning (engagement time, intent of the lead origin, occupation), not fitted to data; kept in
# the JSON form `--scorecard` reads (PointsModel.to_json), so it is edited like any other scorecard.
X_EDUCATION_SCORECARD = Path(__file__).with_name("x_education_scorecard.json")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.model", description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", type=Path, default=None, help=f"CSV file (default {DEFAULT_CSV})")
    p.add_argument("--label", default=DEFAULT_LABEL, help="0/1 outcome column (default Converted)")
    p.add_argument("--drop", nargs="*", default=None, help="columns to leave out (default: the X Education leaks)")
    p.add_argument("--keep", nargs="*", default=(), help="columns the leakage guard must not drop")
    p.add_argument("--id", dest="id_column", default=None, help="id column (never a feature)")
    p.add_argument("--time", dest="time_column", default=None, help="time column: holdout = newest rows")
    p.add_argument("--seeds", type=int, default=5, help="number of holdout seeds (default 5)")
    p.add_argument("--scorecard", type=Path, default=None, help="hand-built points scorecard JSON for the rules baseline "
                   "(default for the X Education file: bench/x_education_scorecard.json)")
    p.add_argument("--json", dest="json_path", type=Path, default=None, help="write the report here")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return the report."""
    csv = args.csv or DEFAULT_CSV
    if not csv.is_file():
        raise TrainingError(f"CSV file not found: {csv}")
    default_file = args.csv is None or csv.resolve() == DEFAULT_CSV.resolve()
    drop = tuple(args.drop) if args.drop is not None else (DEFAULT_DROP if default_file else ())
    scorecard_file = args.scorecard or (X_EDUCATION_SCORECARD if default_file else None)
    scorecard = PointsModel.from_json(json.loads(scorecard_file.read_text())) if scorecard_file else None
    frame = pd.read_csv(csv, low_memory=False)
    options = TrainOptions(
        label=args.label, id_column=args.id_column, time_column=args.time_column, drop=drop,
        keep=tuple(args.keep), scorecard=scorecard,
    )
    per_seed: list[dict[str, Any]] = []
    steps = ("split", "preprocess", "boosters", "evaluate")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console(), transient=False) as progress:
        task = progress.add_task("training", total=args.seeds * len(steps))
        for seed in range(args.seeds):
            def step(name: str, seed: int = seed) -> None:
                progress.update(task, description=f"seed {seed}: {name}", advance=1)

            exp = run_experiment(frame, options, seed=seed, progress=step)
            per_seed.append({"seed": seed, **report_of(exp)})
    first = per_seed[0]
    report = {
        "rows": first["rows"],
        "positives": first["positives"],
        "version": first["version"],
        "dropped_columns": first["dropped_columns"],
        "suspicious_columns": first["suspicious_columns"],
        "model": mean_metrics([r["model"] for r in per_seed]),
        "baselines": {
            name: mean_metrics([r["baselines"][name] for r in per_seed]) for name in ("logistic_regression", "rules")
        },
        "csv": str(csv),
        "label": args.label,
        "seeds": args.seeds,
        "split": "time-ordered" if args.time_column else "stratified 20% holdout",
        "rules_baseline": scorecard.name if scorecard is not None else "derived scorecard",
        "per_seed": per_seed,
    }
    return report


def show(report: dict[str, Any], default_file: bool) -> None:
    """Print the metrics tables."""
    out = console()
    for r in report["per_seed"]:
        rows = {"xgboost (calibrated)": r["model"], **{k: v for k, v in r["baselines"].items()}}
        out.print(metrics_table(f"seed {r['seed']}", rows))
    rows = {"xgboost (calibrated)": report["model"], "logistic regression": report["baselines"]["logistic_regression"],
            f"rules ({report['rules_baseline']})": report["baselines"]["rules"]}
    out.print(metrics_table(f"mean over {report['seeds']} seeds — {report['rows']:,} rows, "
                            f"{report['positives']:,} positives", rows))
    dropped = Table(title="dropped columns")
    dropped.add_column("column")
    dropped.add_column("why")
    for col, why in report["dropped_columns"].items():
        dropped.add_row(col, why)
    out.print(dropped)
    if report["suspicious_columns"]:
        out.print("kept but suspicious (single-feature AUC > 0.90, check for leakage): "
                  + "; ".join(f"{c} {auc:.3f}" for c, auc in report["suspicious_columns"].items()))
    if default_file:
        m, lr = report["model"], report["baselines"]["logistic_regression"]
        checks = Table(title="acceptance targets (X Education)")
        for c in ("check", "target", "measured", "ok"):
            checks.add_column(c)
        margin = m["roc_auc"] - lr["roc_auc"]
        for name, target, value, ok in (
            ("ROC AUC", ">= 0.900", m["roc_auc"], m["roc_auc"] >= TARGETS["roc_auc"]),
            ("AUC - logistic AUC", ">= 0.005", margin, margin >= TARGETS["margin_over_lr"]),
            ("ECE (10 bins)", "<= 0.03", m["ece"], m["ece"] <= TARGETS["ece"]),
            ("top-decile lift", ">= 2.45", m["lift_at_10"], m["lift_at_10"] >= TARGETS["lift_at_10"]),
        ):
            checks.add_row(name, target, fmt(value), "yes" if ok else "[red]NO[/red]")
        out.print(checks)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run, print, write JSON."""
    args = parse_args(argv)
    default_file = args.csv is None or args.csv.resolve() == DEFAULT_CSV.resolve()
    return run_and_report(args, run, lambda report: show(report, default_file),
                          (TrainingError, OSError, pd.errors.ParserError))


if __name__ == "__main__":
    sys.exit(main())
