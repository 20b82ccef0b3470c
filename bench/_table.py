"""Shared helpers for benchmarks: metric tables (rich) and JSON reports."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from scoring.metrics import METRIC_NAMES

# The model registry's JSON cleaner (string keys, numpy scalars unwrapped, NaN/inf as null) serves reports.
from storage.model_registry import clean_json

HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "brier": False, "ece": False, "lift_at_10": True}


def fmt(value: Any, digits: int = 4) -> str:
    """Format a number for a table cell; non-numbers pass through."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(title: str, rows: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRIC_NAMES) -> Table:
    """A table with one row per model and one column per metric; the best value per column is bold."""
    table = Table(title=title)
    table.add_column("model")
    for m in metrics:
        table.add_column(m + (" ↑" if HIGHER_IS_BETTER.get(m, True) else " ↓"), justify="right")
    best: dict[str, float] = {}
    for m in metrics:
        values = [r[m] for r in rows.values() if m in r and isinstance(r[m], (int, float)) and math.isfinite(r[m])]
        if values:
            best[m] = max(values) if HIGHER_IS_BETTER.get(m, True) else min(values)
    for name, row in rows.items():
        cells = []
        for m in metrics:
            text = fmt(row.get(m))
            cells.append(f"[bold]{text}[/bold]" if m in best and row.get(m) == best[m] else text)
        table.add_row(name, *cells)
    return table


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON (NaN/inf become null), creating parent folders."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(clean_json(data), indent=2, sort_keys=False) + "\n")
    return out


def save_report(path: str | Path | None, report: Any) -> None:
    """Write the report as JSON when a path was given, and say where."""
    if path:
        write_json(path, report)
        console().print(f"report written to {path}")


def console() -> Console:
    """The console benchmarks print to."""
    return Console()


def run_and_report(args: Any, run: Callable[[Any], Any], show: Callable[[Any], None],
                   errors: tuple[type[BaseException], ...],
                   describe: Callable[[BaseException], str] = str) -> int:
    """Run a benchmark, print its tables and save its JSON; an expected error is printed and the exit code is 2."""
    try:
        report = run(args)
    except errors as exc:
        console().print(f"[red]error:[/red] {describe(exc)}")
        return 2
    show(report)
    save_report(args.json_path, report)
    return 0
