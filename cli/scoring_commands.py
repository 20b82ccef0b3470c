"""`leadbridge train` and `leadbridge score`: train a model from a CSV export, score a CSV with it."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.context import json_safe, settings_or_exit

TRAIN_STEPS = ("split", "preprocess", "boosters", "evaluate")


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _models_dir(given: Path | None) -> Path:
    if given is not None:
        return given

    return settings_or_exit().data_dir / "models"


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        _fail(f"CSV file not found: {path}")
    try:
        # Strings in, so the model's own preprocessing decides types exactly as in training.
        return pd.read_csv(path, dtype=str, keep_default_na=True, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        _fail(f"cannot read {path} as CSV: {exc}")


def _expand(values: Sequence[str], columns: Sequence[str]) -> list[str]:
    """Column names from repeated options; a value that is not a column may be a comma-separated list."""
    out: list[str] = []
    known = set(columns)
    for value in values:
        if value in known or "," not in value:
            out.append(value)
        else:
            out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4f}"
    return str(value)


@click.command("train")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="CSV export with one row per lead.")
@click.option("--from-events", is_flag=True,
              help="Train from the stored events and outcomes instead of a CSV (features as of each lead's decision "
                   "time; the model can serve the live pipeline).")
@click.option("--label", default=None, help="Outcome column of the CSV (0/1, yes/no, won/lost).")
@click.option("--id", "id_column", default=None, help="Id column (never used as a feature).")
@click.option("--time", "time_column", default=None, help="Created-at column: the holdout is the newest 20%.")
@click.option("--drop", multiple=True, help="Column to leave out (repeat, or comma-separate).")
@click.option("--fit-columns", multiple=True, help="Columns describing who the lead is; they train the grade model.")
@click.option("--keep", multiple=True, help="Column the leakage guard must not drop.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None, help="Write the metrics JSON here.")
@click.option("--models-dir", type=click.Path(path_type=Path), default=None, help="Model registry directory (default DATA_DIR/models).")
@click.option("--calibration", type=click.Choice(["platt", "isotonic"]), default="platt", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random holdout split.")
@click.option("--maturity-days", type=click.FloatRange(min=1), default=None,
              help="--from-events: days without conversion before a lead counts as lost (default 90).")
@click.option("--promote", is_flag=True,
              help="--from-events: promote the model when it beats the champion (or the rules) on the holdout.")
@click.option("--live", is_flag=True,
              help="--csv: train on the columns that match mapped CRM fields (`leadbridge fields`) and declared "
                   "features only, so the model can serve the live pipeline (kind lead).")
def train(
    csv_path: Path | None, from_events: bool, label: str | None, id_column: str | None, time_column: str | None,
    drop: tuple[str, ...], fit_columns: tuple[str, ...], keep: tuple[str, ...], report_path: Path | None,
    models_dir: Path | None, calibration: str, seed: int, maturity_days: float | None, promote: bool, live: bool,
) -> None:
    """Train a scoring model from a CSV of past leads (or the stored events) and register it.

    CSV columns named like a mapped CRM field (its internal name or label) become that feature, derived as
    the live pipeline derives it; a model that reads only such columns and declared features serves live.
    """
    from scoring.model import BundleError
    from scoring.registry import ModelRegistry
    from scoring.schema import max_levels, model_kinds
    from scoring.training import TrainingError, TrainOptions, report_of, run_experiment
    from scoring.training_set import map_csv_columns, serves_live_pipeline

    if from_events:
        if csv_path is not None or label is not None or live:
            _fail("--from-events trains on the stored events and outcomes; leave out --csv, --label and --live")
        _train_from_events(report_path, models_dir, seed, maturity_days, promote)
        return
    if csv_path is None or label is None:
        _fail("give --csv FILE --label COLUMN, or --from-events to train on the stored events and outcomes")
    if promote or maturity_days is not None:
        _fail("--promote and --maturity-days apply to --from-events only (promote a live CSV model with "
              "`leadbridge model promote`)")
    frame = _read_csv(csv_path)
    columns = list(frame.columns)
    dropped_cols, keep_cols, fit_cols = _expand(drop, columns), _expand(keep, columns), _expand(fit_columns, columns)
    unknown = [c for c in dropped_cols if c not in columns]
    if unknown:
        _fail(f"--drop names column(s) not in {csv_path.name}: {', '.join(unknown)}")
    schema, schema_note = _active_schema()
    if live and schema_note:
        _fail(f"--live needs the feature schema from the database: {schema_note}")
    now = datetime.now(UTC)
    try:
        mapping = map_csv_columns(frame, schema, skip=[label, id_column, time_column, *dropped_cols],
                                  time_column=time_column, now=now, live=live)
    except ValueError as exc:
        _fail(str(exc))
    if live and not mapping.mapped:
        _fail(f"none of the columns of {csv_path.name} matches a mapped field (feature schema version "
              f"{schema.version}); map them first with `leadbridge fields map CRM OBJECT PROPERTY --kind K`")
    rename = mapping.mapped
    fit_cols = [rename.get(c, c) for c in fit_cols if c not in mapping.dropped]
    fit_cols += [f.feature for f in schema.fields if f.fit and f.feature in rename.values() and f.feature not in fit_cols]
    options = TrainOptions(
        label=label, id_column=id_column, time_column=time_column, drop=dropped_cols,
        keep=[rename.get(c, c) for c in keep_cols], fit_columns=list(dict.fromkeys(fit_cols)), calibration=calibration,
        kinds=model_kinds(schema, list(rename.values())), max_levels=max_levels(schema),
        schema=schema if rename else None,
    )
    err = Console(stderr=True)
    _print_mapping(mapping, schema, schema_note)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err) as progress:
            task = progress.add_task("training", total=len(TRAIN_STEPS))
            experiment = run_experiment(
                mapping.frame, options, seed=seed, now=now,
                progress=lambda step: progress.update(task, description=f"training: {step}", advance=1),
            )
        registry = ModelRegistry(_models_dir(models_dir))
        row = registry.register(experiment.bundle)
        kind = "lead" if serves_live_pipeline(experiment.bundle.main.pre.input_columns, schema) else "csv"
        recorded = _record_csv_model(row, kind)
    except (TrainingError, BundleError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the model: {exc}")
    report = report_of(experiment)
    out = Console()
    table = Table(title=f"holdout metrics ({experiment.bundle.metadata['training']['split']}, "
                        f"{experiment.bundle.metadata['training']['holdout_rows']:,} rows)")
    table.add_column("model")
    for metric in ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10"):
        table.add_column(metric, justify="right")
    for name, metrics in (("xgboost (calibrated)", report["model"]),
                          ("logistic regression", report["baselines"]["logistic_regression"]),
                          ("rules", report["baselines"]["rules"])):
        table.add_row(name, *(_fmt(metrics[m]) for m in ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10")))
    out.print(table)
    if experiment.dropped:
        out.print("dropped columns: " + "; ".join(f"{c} ({why})" for c, why in experiment.dropped.items()))
    if experiment.suspicious:
        out.print("check these columns for leakage (strong on their own, kept): "
                  + "; ".join(f"{c} (AUC {auc:.3f})" for c, auc in experiment.suspicious.items()))
    if experiment.unlabelled_rows:
        out.print(f"{experiment.unlabelled_rows:,} rows without a label were left out")
    out.print(str(experiment.bundle.metadata["grades"]))
    out.print(f"model {row['version']} saved to {row['path']}")
    out.print(recorded)
    if report_path is not None:
        try:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(json_safe(report), indent=2) + "\n")
        except OSError as exc:
            _fail(f"cannot write the report: {exc}")
        out.print(f"report written to {report_path}")


def _active_schema() -> tuple[Any, str | None]:
    """The feature schema in force, and why it could not be read (None when it was)."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.runtime import service_urls
    from scoring.schema import FeatureSchema
    from storage.db import Database
    from storage.feature_schema import active_schema

    url = service_urls(settings_or_exit()).database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return FeatureSchema.empty(), f"no database yet at {url.removeprefix('sqlite:///')}"
    database = Database(url)
    try:
        with database.session() as session:
            return active_schema(session), None
    except SQLAlchemyError as exc:
        return FeatureSchema.empty(), f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    finally:
        database.dispose()


def _print_mapping(mapping: Any, schema: Any, note: str | None) -> None:
    """Say (on stderr, one line each) which CSV columns became mapped features and which did not."""
    def say(text: str) -> None:
        click.echo(text, err=True)

    if note:
        say(f"note: no mapped CRM fields used ({note})")
        return
    if mapping.mapped:
        say("mapped columns: " + "; ".join(f"{c} -> {f} ({schema.field_of_feature(f).kind})"
                                           for c, f in mapping.mapped.items()))
    elif schema.fields:
        say(f"no column matches a mapped field (feature schema version {schema.version})")
    if mapping.dropped:
        say("left out (not mapped, --live): " + ", ".join(mapping.dropped))
    elif mapping.unmapped and schema.fields:
        say("not mapped (used as CSV columns; the model will not serve live): " + ", ".join(mapping.unmapped))


def _record_csv_model(registered: dict[str, Any], kind: str = "csv") -> str:
    """Record a CSV-trained model in the `models` table: kind "lead" when it reads only declared and mapped
    features (the live pipeline can serve it), else "csv" (it never serves the live pipeline).

    Model files are useful without a database (`leadbridge score --csv`), so a database that does not
    exist yet, or is not migrated, is reported rather than created; `leadbridge model register` records
    the bundle later.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from core.runtime import service_urls
    from storage.db import Database
    from storage.model_registry import record_model

    settings = settings_or_exit()
    url = service_urls(settings).database_url
    later = f"record it later with `leadbridge model register {registered['path']}`"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return f"not recorded in the models table: no database yet at {url.removeprefix('sqlite:///')}; {later}"
    database = Database(url)
    try:
        with database.session(write=True) as session:
            record_model(session, registered, kind=kind)
    except SQLAlchemyError as exc:
        return (f"not recorded in the models table ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                f"run `leadbridge db upgrade`, then {later}")
    finally:
        database.dispose()
    if kind == "lead":
        return (f"recorded in the models table as kind 'lead': it can serve the live pipeline "
                f"(`leadbridge model promote {registered['version']}`)")
    return "recorded in the models table as kind 'csv' (it reads columns the live pipeline does not have)"


def _train_from_events(report_path: Path | None, models_dir: Path | None, seed: int, maturity_days: float | None,
                       promote: bool) -> None:
    """`train --from-events`: the learning loop's training run, in the foreground with progress."""
    from cli.model_commands import print_retrain, run_retrain, services

    with services() as (settings, database, redis):
        result = run_retrain(settings, database, redis, promote=promote, status_reason="train --from-events",
                             maturity_days=maturity_days, gap_hours=None, margin=None, seed=seed,
                             models_dir=models_dir)
    print_retrain(result, report_path)


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], list[tuple[int, str]]]:
    """Header, good rows (with their starting line number) and bad rows (line, problem)."""
    good: list[tuple[int, list[str]]] = []
    bad: list[tuple[int, str]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                _fail(f"{path} is empty (no header row)")
            line = reader.line_num
            while True:
                start = line + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    bad.append((start, f"unreadable CSV: {exc}"))
                    line = reader.line_num
                    continue
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    bad.append((start, f"{len(row)} fields, expected {len(header)}"))
                    continue
                good.append((start, row))
    except UnicodeDecodeError as exc:
        _fail(f"{path} is not UTF-8 text: {exc}")
    return header, good, bad


def _value_problems(frame: pd.DataFrame, pre: Any) -> dict[int, str]:
    """Row position -> problem, for cells a numeric or date column cannot read (they'd silently be missing)."""
    from scoring.tabular import clean_missing

    problems: dict[int, str] = {}
    cleaned = clean_missing(frame[[c for c in pre.input_columns if c in frame.columns]], pre.missing_tokens)
    for spec in pre.columns:
        if spec.name not in cleaned.columns or spec.kind not in ("numeric", "date"):
            continue
        raw = cleaned[spec.name].astype("object")
        if spec.kind == "numeric":
            text = raw.where(raw.isna(), raw.astype(str).str.replace(",", "", regex=False))
            parsed = pd.to_numeric(text, errors="coerce")
        else:
            parsed = pd.to_datetime(raw, errors="coerce", format="mixed", utc=True)
        for pos in np.flatnonzero((raw.notna() & parsed.isna()).to_numpy()):
            problems.setdefault(int(pos), f"column {spec.name!r}: {str(raw.iloc[pos])[:40]!r} is not a "
                                           f"{'number' if spec.kind == 'numeric' else 'date'}")
    return problems


@click.command("score")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), required=True, help="CSV of leads to score.")
@click.option("--model", "model_ref", default=None, help="Model version or bundle directory (default: latest).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="Output CSV (input + score columns).")
@click.option("--mode", type=click.Choice(["probability", "percentile"]), default="probability", show_default=True,
              help="score = calibrated probability x 100, or the lead's percentile among training leads.")
@click.option("--models-dir", type=click.Path(path_type=Path), default=None, help="Model registry directory (default DATA_DIR/models).")
def score(csv_path: Path, model_ref: str | None, out_path: Path, mode: str, models_dir: Path | None) -> None:
    """Add score, grade and reasons columns to a CSV of leads."""
    from core.feature_schema import FeatureSchema, fields_of_model
    from scoring.model import BundleError
    from scoring.registry import ModelRegistry
    from scoring.scorer import score_frame
    from scoring.training_set import map_csv_columns

    if not csv_path.is_file():
        _fail(f"CSV file not found: {csv_path}")
    try:
        if model_ref is not None and Path(model_ref).is_dir():
            from scoring.model import ModelBundle

            bundle = ModelBundle.load(model_ref)
        else:
            bundle = ModelRegistry(_models_dir(models_dir)).resolve(model_ref)
    except BundleError as exc:
        _fail(str(exc))
    header, good, bad = _read_rows(csv_path)
    frame = pd.DataFrame([row for _, row in good], columns=header, dtype=object)
    frame = frame.replace({"": np.nan})
    recorded = fields_of_model(bundle.metadata)
    if recorded:
        # Trained on mapped CRM fields: the export's columns of those fields (by name or label) become the
        # features, derived as in training (a date's age as of now).
        try:
            frame = map_csv_columns(frame, FeatureSchema(0, tuple(recorded)), now=datetime.now(UTC)).frame
        except ValueError as exc:
            _fail(str(exc))
    available = set(frame.columns)  # the output keeps the file's own header and values
    inputs = bundle.main.pre.input_columns
    present = [c for c in inputs if c in available]
    if not present:
        _fail(f"{csv_path.name} has none of the model's input columns ({', '.join(inputs[:6])}...)")
    missing_cols = [c for c in inputs if c not in available]
    problems = _value_problems(frame, bundle.main.pre)
    for pos, problem in sorted(problems.items()):
        bad.append((good[pos][0], problem))
    ok_positions = [i for i in range(len(good)) if i not in problems]
    err = Console(stderr=True)
    results = None
    if ok_positions:
        with err.status(f"scoring {len(ok_positions):,} leads with model {bundle.version}"):
            results = score_frame(frame.iloc[ok_positions].reset_index(drop=True), bundle, mode=mode)  # type: ignore[arg-type]
    by_line: dict[int, tuple[str, str, str, str]] = {}
    if results is not None:
        for k, pos in enumerate(ok_positions):
            grade = results.grades[k]
            by_line[good[pos][0]] = (str(int(results.values[k])), grade or "", "; ".join(results.reasons[k]), "")
    errors = {line: problem for line, problem in bad}
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([*header, "score", "grade", "reasons", "score_error"])
            for line, row in good:
                values = by_line.get(line, ("", "", "", errors.get(line, "")))
                writer.writerow([*row, *values])
    except OSError as exc:
        _fail(f"cannot write {out_path}: {exc}")
    for line, problem in sorted(bad):
        err.print(f"line {line}: {problem}", highlight=False)
    if missing_cols:
        err.print(f"note: {len(missing_cols)} model column(s) absent from the file, treated as missing: "
                  f"{', '.join(missing_cols[:8])}", highlight=False)
    if bundle.grade_source != "fit":
        err.print("note: this model has no fit-only model, so grades are the score's percentile among its "
                  "training rows (A: top 20%)", highlight=False)
    click.echo(f"scored {len(by_line):,} rows with model {bundle.version}; {len(bad):,} bad rows; wrote {out_path}")
