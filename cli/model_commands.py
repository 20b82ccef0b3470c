"""`leadbridge model ...`: the model registry from the shell: list, promote, roll back, retrain, drift, prequential.

Promote and roll back change the champion row and the Redis key every worker checks before each task,
so running workers switch models without a restart (the admin's Models page does the same).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.context import embedded_services, fail, json_safe, settings_or_exit


@contextmanager
def services(need_redis: bool = True) -> Iterator[tuple[Any, Any, Any]]:
    """(settings, database, redis client) for the configured deployment; fails clearly when unreachable."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.runtime import redis_client
    from storage.db import Database

    settings = settings_or_exit()
    manager = embedded_services(settings) if need_redis else _no_redis(settings)
    with manager as urls:
        database = Database(urls.database_url)
        try:
            database.ping()
        except SQLAlchemyError as exc:
            fail(f"cannot reach the database: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        redis = redis_client(urls.redis_url) if need_redis else None
        try:
            yield settings, database, redis
        except SQLAlchemyError as exc:
            fail(f"database error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]} "
                 "(is the schema migrated? run `leadbridge db upgrade`)")
        finally:
            database.dispose()


def read_database(read: Callable[[Any], Any]) -> Any:
    """`read(session)` against the configured database (no Redis needed); fails clearly when unreachable."""
    with services(need_redis=False) as (_settings, database, _redis), database.session() as session:
        return read(session)


@contextmanager
def _no_redis(settings: Any) -> Iterator[Any]:
    from core.runtime import service_urls

    yield service_urls(settings)


def write_json(path: Path, data: Any) -> None:
    """Write a report as indented JSON (NaN and infinities as null), creating the folder."""

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(data), indent=2, default=str) + "\n")


def actor() -> str:
    """How the audit log names a change made from this shell."""
    from cli.users_commands import cli_actor

    return cli_actor()


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "n/a" if isinstance(value, float) and not math.isfinite(value) else f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


@click.group("model")
def model() -> None:
    """Model registry: list versions, promote, roll back, retrain, drift and prequential reports."""


@model.command("list")
@click.option("--kind", type=click.Choice(["lead", "csv"]), default=None, help="Only this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(kind: str | None, as_json: bool) -> None:
    """Registered models, newest first, with status and holdout ROC AUC."""
    from storage.model_registry import describe_row, list_models

    with services(need_redis=False) as (_settings, database, _redis), database.session() as session:
        rows = [describe_row(r) for r in list_models(session, kind)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="models (newest first)")
    for column in ("version", "kind", "status", "roc_auc", "labelled", "trained_at", "promoted_at", "last decision"):
        table.add_column(column)
    for r in rows:
        decision = r["decision"] or {}
        table.add_row(r["version"], r["kind"], r["status"], _num(r["roc_auc"]), str(r["labelled_outcomes"]),
                      (r["trained_at"] or "")[:19], (r["promoted_at"] or "")[:19],
                      ("promote" if decision.get("promote") else "keep") if decision else "")
    Console().print(table)
    if not rows:
        click.echo("no models yet: `leadbridge train --from-events` trains one from the stored events")


@model.command("promote")
@click.argument("version")
def promote_command(version: str) -> None:
    """Make VERSION the champion; running workers switch to it before their next task."""
    from storage.model_registry import ModelRegistryError, promote

    with services() as (_settings, database, redis):
        try:
            row = promote(database, redis, version, actor())
        except ModelRegistryError as exc:
            fail(str(exc), code=1)
    click.echo(f"{row.version} is now the champion; workers switch to it before their next task")


@model.command("rollback")
@click.option("--kind", type=click.Choice(["lead"]), default="lead", show_default=True)
def rollback_command(kind: str) -> None:
    """Retire the champion and restore the one promoted before it (workers switch without a restart)."""
    from storage.model_registry import ModelRegistryError, rollback

    with services() as (_settings, database, redis):
        try:
            row = rollback(database, redis, actor(), kind)
        except ModelRegistryError as exc:
            fail(str(exc), code=1)
    click.echo(f"rolled back: {row.version} is the champion again")


def progress_bar(console: Console) -> Progress:
    """The progress display long learning commands share."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def run_retrain(settings: Any, database: Any, redis: Any, *, promote: bool, status_reason: str,
                maturity_days: float | None, gap_hours: float | None, margin: float | None, seed: int,
                models_dir: Path | None = None) -> Any:
    """Train from stored events with a progress display; returns the RetrainResult."""
    from tasks.learning import LearningConfig, retrain_from_events

    config = LearningConfig.from_settings(settings, maturity_days=maturity_days, decision_gap_hours=gap_hours,
                                          promotion_margin=margin, models_dir=models_dir)
    err = Console(stderr=True)
    with progress_bar(err) as bar:
        tasks: dict[str, Any] = {}

        def step(what: str, advance: int, total: int | None = None) -> None:
            name = what.split(":")[0]
            if name not in tasks:
                tasks[name] = bar.add_task(what, total=total)
            task = tasks[name]
            bar.update(task, advance=advance, description=what, **({"total": total} if total is not None else {}))

        return retrain_from_events(database, redis, config, reason=status_reason, actor=actor(), promote=promote,
                                   seed=seed, progress=step)


def print_retrain(result: Any, report_path: Path | None) -> None:
    """Tables for a retraining run (metrics vs baselines vs champion) and the optional JSON report."""
    out = Console()
    if result.status == "skipped":
        fail(result.reason, code=1)
    table = Table(title=f"holdout metrics (newest {result.report['training']['holdout_rows']:,} labelled leads)")
    table.add_column("model")
    names = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10")
    for metric in names:
        table.add_column(metric, justify="right")
    comparison = result.report["champion_comparison"]
    rows = [("xgboost (calibrated)", result.metrics),
            ("logistic regression", result.baselines["logistic_regression"]),
            ("rules baseline", result.baselines["rules"]),
            (comparison["decision"]["champion_name"], comparison["champion"])]
    for name, metrics in rows:
        table.add_row(name, *(_num((metrics or {}).get(m)) for m in names))
    out.print(table)
    out.print(f"{result.labelled:,} labelled leads ({result.positives:,} won); model {result.version} at {result.path}")
    out.print(f"decision: {result.reason}")
    out.print(f"status: {result.status}" + ("" if result.status == "promoted" else
                                            f"  (promote with `leadbridge model promote {result.version}`)"))
    if report_path is not None:
        try:
            write_json(report_path, {**result.report, "status": result.status, "decision_reason": result.reason})
        except OSError as exc:
            fail(f"cannot write the report: {exc}")
        out.print(f"report written to {report_path}")


@model.command("retrain")
@click.option("--promote/--no-promote", default=True, show_default=True,
              help="Promote the challenger when it beats the champion by the margin.")
@click.option("--maturity-days", type=click.FloatRange(min=1), default=None,
              help="Days without conversion before a lead counts as lost (default 90).")
@click.option("--gap-hours", type=click.FloatRange(min=0), default=None,
              help="Features are built this long before the outcome (default 24).")
@click.option("--margin", type=click.FloatRange(min=0), default=None, help="Required ROC AUC gain (default 0.005).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None, help="Write a JSON report.")
@click.option("--seed", type=int, default=0, show_default=True)
def retrain_command(promote: bool, maturity_days: float | None, gap_hours: float | None, margin: float | None,
                    report_path: Path | None, seed: int) -> None:
    """Retrain now from the stored events and outcomes (what beat does on its schedule)."""
    with services() as (settings, database, redis):
        result = run_retrain(settings, database, redis, promote=promote, status_reason="manual",
                             maturity_days=maturity_days, gap_hours=gap_hours, margin=margin, seed=seed)
    print_retrain(result, report_path)


@model.command("drift")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=None,
              help="PSI alert threshold (default 0.2).")
@click.option("--window-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Live window length (default 7).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def drift_command(threshold: float | None, window_days: float | None, as_json: bool) -> None:
    """PSI per feature and on the score: the champion's live window against its training data."""
    from scoring.features import RedisFeatureStore
    from storage.feature_schema import active_schema
    from tasks.learning import LearningConfig, check_drift_now

    with services() as (settings, database, redis):
        config = LearningConfig.from_settings(settings, psi_threshold=threshold, drift_window_days=window_days)
        with database.session() as session:
            schema = active_schema(session)
        report = check_drift_now(database, redis, RedisFeatureStore(redis, schema=schema), config, actor=actor())
    if report is None:
        fail("no champion with a drift reference: train one with `leadbridge train --from-events` and promote it",
             code=1)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    table = Table(title=f"drift of {report.model_version}: {report.live_rows:,} live leads vs "
                        f"{report.reference_rows:,} training rows (alert above {report.threshold})")
    table.add_column("feature")
    table.add_column("PSI", justify="right")
    table.add_column("")
    for name, value in report.top(len(report.features) + 1):
        flag = "ALERT" if value > report.threshold else ("moderate" if value > 0.1 else "")
        table.add_row(name, f"{value:.4f}", flag)
    Console().print(table)
    click.echo("drift alert: " + ", ".join(report.drifted) if report.alert else "no drift above the threshold")


@model.command("prequential")
@click.option("--window-days", type=click.IntRange(min=1), default=28, show_default=True)
@click.option("--step-days", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--maturity-days", type=click.FloatRange(min=1), default=None)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write the report here.")
def prequential_command(window_days: int, step_days: int, maturity_days: float | None, json_path: Path | None) -> None:
    """Rolling ROC AUC and calibration of live scores: each outcome tested by the model live at its decision time."""
    from tasks.learning import LearningConfig, prequential_report

    with services(need_redis=False) as (settings, database, _redis):
        config = LearningConfig.from_settings(settings, maturity_days=maturity_days)
        status = Console(stderr=True).status("testing every labelled lead against its score at decision time")
        with status, database.session() as session:
            report = prequential_report(session, policy=config.policy, window_days=window_days, step_days=step_days)
    table = Table(title=f"prequential: {report['tested']:,} of {report['labels']:,} labelled leads had a live score")
    for column in ("window end", "leads", "won", "roc_auc", "ece", "brier", "mean score", "conversion"):
        table.add_column(column, justify="right")
    for w in report["windows"]:
        table.add_row(w["end"][:10], str(w["rows"]), str(w["positives"]), _num(w["roc_auc"]), _num(w["ece"]),
                      _num(w["brier"]), _num(w["mean_probability"], 3), _num(w["conversion_rate"], 3))
    Console().print(table)
    adwin = report.get("adwin")
    if adwin is not None:
        click.echo(f"ADWIN on the prequential error: {adwin['detections']} change(s) detected"
                   + (f", last at {adwin['at'][-1][:19]}" if adwin["at"] else ""))
    if json_path is not None:
        try:
            write_json(json_path, report)
        except OSError as exc:
            fail(f"cannot write the report: {exc}")
        click.echo(f"report written to {json_path}")


@model.command("register")
@click.argument("path", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--kind", type=click.Choice(["lead", "csv"]), default=None,
              help="Default: lead when the model reads only declared and mapped features, else csv.")
def register_command(path: Path, kind: str | None) -> None:
    """Record an existing bundle directory (e.g. trained before the database existed) in the models table."""
    from scoring.model import BundleError, ModelBundle
    from scoring.registry import ModelRegistry
    from scoring.training_set import serves_live_pipeline
    from storage.feature_schema import active_schema
    from storage.model_registry import record_model

    try:
        bundle = ModelBundle.load(path)
    except BundleError as exc:
        fail(str(exc), code=1)
    with services(need_redis=False) as (_settings, database, _redis):
        from sqlalchemy.exc import IntegrityError

        with database.session() as session:
            schema = active_schema(session)
        live = serves_live_pipeline(bundle.main.pre.input_columns, schema)
        chosen = kind or ("lead" if live else "csv")
        if chosen == "lead" and not live:
            fail(f"{bundle.version} reads columns the live pipeline does not have (neither declared features nor "
                 f"mapped in feature schema version {schema.version}); it can only be registered as csv")
        try:
            with database.session(write=True) as session:
                record_model(session, ModelRegistry.describe(bundle, path.resolve()), kind=chosen)
        except IntegrityError:
            fail(f"model version {bundle.version} is already recorded", code=1)
    click.echo(f"recorded {bundle.version} ({chosen}) from {path}")
