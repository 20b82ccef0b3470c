"""Replay benchmark: a CSV of leads replayed through the sandbox CRM; do its own fields reach the live score?

    python -m bench.replay [--csv FILE --label COL] [--id COL] [--time COL] [--drop COL ...]
                           [--join FILE COL] [--holdout 0.2] [--seed 0] [--json FILE]

With no --csv it replays X Education (../shared/data/x_education/Leads.csv, label Converted, the leaky
columns bench/model.py drops left out). Any tabular CSV works: column kinds are inferred the way
`leadbridge train --csv` infers them. Phases, against a `leadbridge run` in sandbox mode:

1. split: the labelled rows split exactly as `leadbridge train --csv --seed S` splits them (a stratified
   holdout, or the newest rows with --time). offline: the training rows through `leadbridge train --csv`,
   the held-out rows through `leadbridge score --csv` -> offline_auc; the logistic baseline on the
   same rows -> lr_auc.
2. properties: each column becomes a custom contact property created through HubSpot's properties API
   (internal name = slug of the column, label = the column, type/fieldType from its kind).
3. history: the training rows become contacts (hubspot-api-client batch create), backdated in time
   order to before the label maturity window (the sandbox-only X-Sandbox-Time header); their outcomes
   arrive as CRM changes days later (lifecycle stage customer when won, "other" when not), also
   backdated. The sandbox sends its signed webhooks for all of it to leadbridge, which uses event time.
4. schema: the product's own commands, as an admin connecting a CRM with history: `leadbridge fields
   discover hubspot` (kinds suggested from the property types and a sample of records), then `leadbridge
   fields map` for each of the CSV's properties it suggests (--fit columns as fit fields; for X Education
   the columns describing who the lead is, DEFAULT_FIT). Mapping comes after the history on purpose: a
   company installs leadbridge on a CRM that already holds its past leads, discovery suggests kinds from
   those records, and the backfill reads the mapped properties' history, so nothing depends on webhooks
   having carried values before the fields were mapped. New contacts (phase 6) are read once on first
   sight (enrichment) for their mapped properties; a creation webhook carries none.
5. train: `leadbridge backfill hubspot --no-writeback` (the records' history with their mapped
   properties, propertiesWithHistory),
   `leadbridge train --from-events --promote` (labels with the maturity window, champion gate); when the
   gate keeps it, `leadbridge model promote` as an admin would, reported as gate_passed false.
6. live: the held-out rows arrive as new contacts at `--rate` per second; leadbridge scores them from the
   webhooks and writes score/grade/reasons to the CRM; they are read back through hubspot-api-client.
   lost = held-out contacts without a score from the promoted model within --timeout; p95_ms = creation
   in the sandbox -> the final score written to the CRM (the sandbox's own timestamps).

JSON: rows, rows_test, offline_auc, live_auc, lr_auc, live_ece, live_lift_at_10, graded_share,
reasons_share, lost, p95_ms, grade_conversion, grades_fall, plus the phases' details.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench._table import console, fmt, run_and_report
from bench.e2e import Stack, percentile, start_run, wait_drained
from bench.model import DEFAULT_CSV, DEFAULT_DROP, DEFAULT_LABEL
from sandbox import DEFAULT_HUBSPOT_TOKEN

REPO = Path(__file__).resolve().parent.parent
CLOCK_HEADER = "X-Sandbox-Time"  # sandbox-only: when a change happened (sandbox/hubspot_api.py)
MATURITY_DAYS = 90.0  # passed to `train --from-events`; the history ends before it
HISTORY_DAYS = 180.0  # span of the backdated history when the CSV has no time column
OUTCOME_LAG_DAYS = (3.0, 45.0)  # an outcome arrives this many days after its contact was created
BATCH = 100  # HubSpot's batch limit
SCORE_PROPERTIES = ["leadbridge_score", "leadbridge_grade", "leadbridge_reasons", "leadbridge_model_version"]
PROTECTED = {"email", "lifecyclestage", "createdate", "lastmodifieddate", "hs_object_id", "firstname", "lastname"}
MAX_OPTIONS = 1000  # categorical columns with more distinct values become text properties
GRADES = ("A", "B", "C", "D", "E", "F")
# X Education's columns that describe who the lead is (not what they did or how they arrived), marked as fit
# fields the way its admin would from the form's meaning: they train the grade model. Country is read as
# the built-in fit attribute.
DEFAULT_FIT = (
    "What is your current occupation",
    "Specialization",
    "City",
    "Country",
    "What matters most to you in choosing a course",
    "How did you hear about X Education",
)


class ReplayError(Exception):
    """The replay cannot go on; the message says why."""


# ---- the CSV ------------------------------------------------------------------------------------


@dataclass
class Column:
    """One CSV column as a HubSpot contact property."""

    column: str
    name: str  # internal property name
    kind: str  # numeric | boolean | date | categorical | text
    hs_type: str
    field_type: str
    options: list[str] = field(default_factory=list)
    created: bool = True  # False: an existing property of the same name took the values

    def value(self, raw: Any) -> str | None:
        """The CRM value for one cell (None: leave the property empty)."""
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return None
        text = str(raw).strip()
        if text == "":
            return None
        if self.kind == "boolean":
            word = text.lower()
            return "true" if word in ("yes", "true", "y", "t", "1") else "false" if word in ("no", "false", "n", "f",
                                                                                         "0") else None
        if self.kind == "numeric":
            try:
                number = float(text.replace(",", ""))
            except ValueError:
                return None
            return None if not math.isfinite(number) else (str(int(number)) if number.is_integer() else repr(number))
        if self.kind == "date":
            stamp = pd.to_datetime(text, errors="coerce", utc=True)
            return None if pd.isna(stamp) else stamp.isoformat().replace("+00:00", "Z")
        return text[:65536]


@dataclass
class Dataset:
    """The labelled rows, their split and the columns that become properties."""

    frame: pd.DataFrame  # labelled rows, strings
    y: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    columns: list[Column]
    label: str
    id_column: str | None
    time_column: str | None
    times: pd.Series | None  # parsed --time values (UTC), else None
    fit: list[str] = field(default_factory=list)  # columns mapped as fit fields


def slug(name: str) -> str:
    """A HubSpot internal property name for a column: lower-case letters, digits and _."""
    text = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_") or "column"
    if not text[0].isalpha():
        text = "p_" + text
    return text[:100]


def column_kind(series: pd.Series) -> str:
    """The column's kind as `leadbridge train --csv` infers it; many-valued categoricals are text."""
    from scoring.tabular import clean_missing, infer_kind

    cleaned = clean_missing(series.to_frame())[series.name]
    kind = infer_kind(cleaned)
    if kind == "categorical" and cleaned.dropna().nunique() > MAX_OPTIONS:
        return "text"
    return kind


def property_of(column: str, series: pd.Series, taken: set[str]) -> Column:
    """The property a column becomes (type and fieldType from its kind, options for categoricals)."""
    kind = column_kind(series)
    name = slug(column)
    while name in taken:
        name = f"{name[:96]}_{len(taken) % 1000}"
    taken.add(name)
    if kind == "numeric":
        return Column(column, name, kind, "number", "number")
    if kind == "boolean":
        return Column(column, name, kind, "bool", "booleancheckbox", ["true", "false"])
    if kind == "date":
        return Column(column, name, kind, "datetime", "date")
    values = sorted({str(v).strip() for v in series.dropna() if str(v).strip()})
    # HubSpot reads ";" in an enumeration value as a multi-select list: such columns stay text properties.
    if kind == "categorical" and not any(";" in v for v in values):
        return Column(column, name, kind, "enumeration", "select", values)
    return Column(column, name, kind, "string", "text")


def load(args: argparse.Namespace) -> Dataset:
    """Read the CSV (and a joined file), keep labelled rows, split them as `train --csv` does."""
    from scoring.training import TrainingError, parse_label, split_rows

    path: Path = args.csv or DEFAULT_CSV
    if not path.is_file():
        hint = " (the X Education file is expected next to the repository: ../shared/data/x_education/Leads.csv)" \
            if args.csv is None else ""
        raise ReplayError(f"CSV file not found: {path}{hint}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=True, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReplayError(f"cannot read {path} as CSV: {exc}") from None
    if args.join:
        join_path, key = Path(args.join[0]), args.join[1]
        if not join_path.is_file():
            raise ReplayError(f"--join file not found: {join_path}")
        other = pd.read_csv(join_path, dtype=str, keep_default_na=True)
        if key not in frame.columns or key not in other.columns:
            raise ReplayError(f"--join column {key!r} must be in both {path.name} and {join_path.name}")
        other = other.drop_duplicates(key)
        frame = frame.merge(other, on=key, how="left", suffixes=("", f" ({join_path.stem})"))
    drop = list(args.drop) if args.drop is not None else (list(DEFAULT_DROP) if args.csv is None else [])
    fit = list(args.fit) if args.fit is not None else (list(DEFAULT_FIT) if args.csv is None else [])
    unknown = [c for c in [*drop, *fit, args.id_column, args.time_column] if c and c not in frame.columns]
    if unknown:
        raise ReplayError(f"column(s) not in {path.name}: {', '.join(unknown)}")
    if args.open_values:
        if args.label not in frame.columns:
            raise ReplayError(f"label column {args.label!r} not in {path.name}")
        # Still-open rows (a deal in progress) have no outcome yet: they are not part of the replay.
        frame = frame[~frame[args.label].astype(str).str.strip().isin(args.open_values)].reset_index(drop=True)
    try:
        y, labelled = parse_label(frame, args.label)
    except TrainingError as exc:
        raise ReplayError(str(exc)) from None
    data = frame.loc[labelled].drop(columns=[c for c in drop if c != args.id_column]).reset_index(drop=True)
    times = None
    order = None
    if args.time_column:
        times = pd.to_datetime(data[args.time_column], errors="coerce", format="mixed", utc=True)
        if times.isna().mean() > 0.5:
            raise ReplayError(f"time column {args.time_column!r}: most values are not dates")
        # As scoring.training orders a --time split: undated rows first (oldest).
        order = times.fillna(pd.Timestamp.min.tz_localize("UTC")).astype("int64").to_numpy()
    if not 0 < args.holdout < 1:
        raise ReplayError("--holdout must be between 0 and 1")
    train_idx, test_idx = split_rows(y, args.holdout, args.seed, order)
    features = [c for c in data.columns if c not in (args.label, args.id_column, args.time_column)]
    taken = set(PROTECTED) | {n for n in SCORE_PROPERTIES}
    columns = [property_of(c, data[c], taken) for c in features]
    return Dataset(data, y, train_idx, test_idx, columns, args.label, args.id_column, args.time_column, times, fit)


# ---- offline: the same split through `leadbridge train --csv` -------------------------------------


def run_cli(stack: Stack, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run `leadbridge ARGS` against the stack; ReplayError with its message when it fails."""
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], env=stack.env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-5:]
        raise ReplayError(f"`leadbridge {' '.join(args[:3])}` failed ({done.returncode}): " + " | ".join(tail))
    return done


def offline(stack: Stack, data: Dataset, work: Path, seed: int) -> dict[str, Any]:
    """Train on the training rows with `train --csv`, score the held-out rows with `score --csv`; LR on the same."""
    from scoring.metrics import evaluate
    from scoring.tabular import Preprocessor
    from scoring.training import logistic_baseline

    keep = [c.column for c in data.columns] + [data.label] + [c for c in (data.id_column, data.time_column) if c]
    train_csv, test_csv = work / "train.csv", work / "test.csv"
    data.frame.iloc[data.train_idx][keep].to_csv(train_csv, index=False)
    data.frame.iloc[data.test_idx][keep].drop(columns=[data.label]).to_csv(test_csv, index=False)
    argv = ["train", "--csv", str(train_csv), "--label", data.label, "--seed", str(seed), "--models-dir",
            str(work / "csv-models"), "--report", str(work / "train-csv.json")]
    if data.id_column:
        argv += ["--id", data.id_column]
    if data.time_column:
        argv += ["--time", data.time_column]
    run_cli(stack, *argv)
    report = json.loads((work / "train-csv.json").read_text())
    run_cli(stack, "score", "--csv", str(test_csv), "--model", report["version"], "--models-dir",
            str(work / "csv-models"), "--out", str(work / "test-scored.csv"))
    scored = pd.read_csv(work / "test-scored.csv", dtype={"score": float})
    y_test = data.y[data.test_idx]
    offline_metrics = evaluate(y_test, scored["score"].fillna(0).to_numpy() / 100.0)
    raw = data.frame[[c.column for c in data.columns]]
    pre = Preprocessor.fit(raw.iloc[data.train_idx])
    p_lr = logistic_baseline(pre.clean(raw.iloc[data.train_idx]), data.y[data.train_idx],
                             pre.clean(raw.iloc[data.test_idx]), pre)
    return {"offline": offline_metrics, "logistic_regression": evaluate(y_test, p_lr),
            "train_csv_report": {k: report[k] for k in ("version", "model", "baselines", "dropped_columns")}}


# ---- the sandbox CRM through hubspot-api-client ---------------------------------------------------


class Crm:
    """The sandbox CRM as the company's own tools reach it: hubspot-api-client over HTTP."""

    def __init__(self, base_url: str) -> None:
        from hubspot import HubSpot

        self.api = HubSpot(access_token=DEFAULT_HUBSPOT_TOKEN, host=base_url.rstrip("/"))
        self.contacts = self.api.crm.contacts
        self.properties = self.api.crm.properties

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One SDK call, waiting out 429s (the replay shares the portal's rate limit with leadbridge)."""
        for _ in range(60):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the SDK raises one ApiException class per API module
                if getattr(exc, "status", None) != 429:
                    raise
                headers = getattr(exc, "headers", None) or {}
                time.sleep(float(headers.get("Retry-After", 1) or 1))
        raise ReplayError("the sandbox CRM kept answering 429")

    def existing_properties(self) -> dict[str, dict[str, Any]]:
        """Contact properties the portal has: name -> {type, read_only}."""
        found = self.call(self.properties.core_api.get_all, "contacts")
        return {p.name: {"type": p.type, "read_only": bool(p.modification_metadata and
                                                           p.modification_metadata.read_only_value)}
                for p in found.results}

    def create_properties(self, columns: Sequence[Column]) -> None:
        """Create the columns' custom properties (batch); a same-named writable property of a fitting type is used."""
        from hubspot.crm.properties import BatchInputPropertyCreate, OptionInput, PropertyCreate

        existing = self.existing_properties()
        todo = []
        for col in columns:
            have = existing.get(col.name)
            if have is not None:
                fits = not have["read_only"] and (have["type"] == col.hs_type or have["type"] == "string")
                if fits:
                    col.created = False
                    if have["type"] == "string":
                        col.hs_type = "string"
                    continue
                col.name = f"{col.name[:95]}_csv"
            options = [OptionInput(label=o[:100], value=o, display_order=i, hidden=False)
                       for i, o in enumerate(col.options)] if col.hs_type in ("enumeration", "bool") else None
            todo.append(PropertyCreate(name=col.name, label=col.column[:100], type=col.hs_type,
                                       field_type=col.field_type, group_name="contactinformation",
                                       description=f"Replayed from the CSV column {col.column!r}", options=options,
                                       form_field=False))
        for start in range(0, len(todo), BATCH):
            self.call(self.properties.batch_api.create, "contacts",
                      BatchInputPropertyCreate(inputs=todo[start : start + BATCH]))

    def create_contacts(self, rows: list[dict[str, str]], at: float | None) -> list[tuple[str, float]]:
        """Create contacts (<= 100) in one batch call, backdated to `at` (epoch s) when given: [(id, created at)]."""
        from hubspot.crm.contacts import (BatchInputSimplePublicObjectBatchInputForCreate,
                                          SimplePublicObjectBatchInputForCreate)

        body = BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[SimplePublicObjectBatchInputForCreate(properties=r, associations=[]) for r in rows])
        headers = {CLOCK_HEADER: str(int(at * 1000))} if at is not None else {}
        result = self.call(self.contacts.batch_api.create, body, _headers=headers)
        # The batch answers in input order (HubSpot does not promise it; the sandbox does, and ids rise).
        return [(r.id, r.created_at.timestamp()) for r in sorted(result.results, key=lambda r: int(r.id))]

    def update_contacts(self, changes: list[tuple[str, dict[str, str]]], at: float) -> None:
        """Change contacts (<= 100) in one batch call, backdated to `at`."""
        from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectBatchInput

        body = BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=cid, properties=props) for cid, props in changes])
        self.call(self.contacts.batch_api.update, body, _headers={CLOCK_HEADER: str(int(at * 1000))})

    def read_scores(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """leadbridge's fields of these contacts, read back through the SDK."""
        from hubspot.crm.contacts import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), BATCH):
            body = BatchReadInputSimplePublicObjectId(
                properties=SCORE_PROPERTIES, properties_with_history=[],
                inputs=[SimplePublicObjectId(id=i) for i in ids[start : start + BATCH]])
            result = self.call(self.contacts.batch_api.read, body, archived=False)
            for r in result.results:
                out[r.id] = dict(r.properties or {})
        return out


def contact_properties(data: Dataset, index: int) -> dict[str, str]:
    """One row's property values (empty cells left out)."""
    row = data.frame.iloc[index]
    props = {}
    for col in data.columns:
        value = col.value(row[col.column])
        if value is not None:
            if col.hs_type == "enumeration" and value not in col.options:
                continue
            props[col.name] = value
    return props


# ---- the product's schema commands ---------------------------------------------------------------


def map_schema(stack: Stack, columns: Sequence[Column], fit: Sequence[str]) -> dict[str, Any]:
    """`leadbridge fields discover hubspot`, then `leadbridge fields map` for each of our columns it suggests.

    The discovered kind is used (the admin's path); columns in `fit` are mapped as fit fields (grade model).
    """
    probe = subprocess.run([sys.executable, "-m", "cli.main", "fields", "--help"], env=stack.env, cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 or "discover" not in probe.stdout or " map " not in f" {probe.stdout} ":
        return {"status": "no `leadbridge fields discover|map` in this build: built-in features only", "mapped": []}
    found = json.loads(run_cli(stack, "fields", "discover", "hubspot", "--json").stdout)
    suggested = {f["name"]: f for f in found.get("fields", []) if f.get("object_type", "contacts") == "contacts"}
    mapped, skipped = [], []
    for col in columns:
        item = suggested.get(col.name)
        kind = (item or {}).get("suggested_kind")
        if not kind or kind == "skip":
            skipped.append({"property": col.name, "why": (item or {}).get("reason", "not discovered")})
            continue
        argv = ["fields", "map", "hubspot", "contacts", col.name, "--kind", kind, "--label", col.column]
        if col.column in fit:
            argv.append("--fit")
        run_cli(stack, *argv)
        mapped.append({"property": col.name, "kind": kind, "csv_kind": col.kind, "fit": col.column in fit})
    return {"status": "mapped", "mapped": mapped, "skipped": skipped}


# ---- history and live ----------------------------------------------------------------------------


def history_times(data: Dataset, now: float, rng: np.random.Generator) -> np.ndarray:
    """Creation times (epoch s) of the training rows: in --time order (shifted), else a random order, all
    ending a few days before the maturity window so every training lead is labelled when training runs."""
    end = now - (MATURITY_DAYS + 5) * 86400
    n = len(data.train_idx)
    if data.times is not None:
        # Seconds since the epoch whatever the parsed unit (pandas 3 parses dates to microseconds, not ns).
        stamps = data.times.iloc[data.train_idx]
        seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        valid = ~data.times.iloc[data.train_idx].isna().to_numpy()
        fallback = seconds[valid].min() if valid.any() else end
        seconds = np.where(valid, seconds, fallback)
        return seconds - (seconds.max() - end)
    spacing = HISTORY_DAYS * 86400 / max(1, n)
    positions = rng.permutation(n)
    return end - (n - 1 - positions) * spacing


def replay_history(crm: Crm, data: Dataset, times: np.ndarray, rng: np.random.Generator,
                   progress: Progress) -> tuple[dict[int, str], int]:
    """Training rows -> backdated contacts in time order, then their outcomes as backdated CRM changes."""
    order = np.argsort(times, kind="stable")
    ids: dict[int, str] = {}
    step = 25  # a batch shares one creation instant: small batches keep the history's time order fine-grained
    task = progress.add_task("history: contacts", total=len(order))
    for start in range(0, len(order), step):
        chunk = order[start : start + step]
        rows = [contact_properties(data, int(data.train_idx[k])) for k in chunk]
        made = crm.create_contacts(rows, float(times[chunk[-1]]))
        ids.update({int(data.train_idx[k]): cid for k, (cid, _) in zip(chunk, made)})
        progress.advance(task, len(chunk))
    lags = rng.uniform(*OUTCOME_LAG_DAYS, size=len(order)) * 86400
    changes = sorted((float(times[k] + lags[k]), int(data.train_idx[k])) for k in range(len(order)))
    task = progress.add_task("history: outcomes", total=len(changes))
    for start in range(0, len(changes), BATCH):
        chunk = changes[start : start + BATCH]
        # One instant per batch: the latest in it, so no outcome moves before its own time.
        crm.update_contacts([(ids[i], {"lifecyclestage": "customer" if data.y[i] else "other"}) for _, i in chunk],
                            chunk[-1][0])
        progress.advance(task, len(chunk))
    return ids, int(sum(data.y[i] for i in ids))


def replay_live(crm: Crm, data: Dataset, rate: float, progress: Progress) -> dict[str, tuple[int, float]]:
    """Held-out rows -> new contacts at `rate` per second (time order with --time); id -> (row, created at)."""
    test = list(data.test_idx)
    if data.times is not None:
        test.sort(key=lambda i: (data.times.iloc[i] if not pd.isna(data.times.iloc[i]) else pd.Timestamp.min.tz_localize(
            "UTC"), i))
    step = max(1, min(BATCH, int(rate / 5) or 1))
    sent: dict[str, tuple[int, float]] = {}
    task = progress.add_task("live: held-out contacts", total=len(test))
    began = time.monotonic()
    for start in range(0, len(test), step):
        chunk = test[start : start + step]
        due = began + start / rate
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        made = crm.create_contacts([contact_properties(data, int(i)) for i in chunk], None)
        sent.update({cid: (int(i), created) for i, (cid, created) in zip(chunk, made)})
        progress.advance(task, len(chunk))
    return sent


def flush_webhooks(stack: Stack, timeout: float = 1800) -> None:
    """Wait until the sandbox has delivered every queued webhook (leadbridge acknowledged them)."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.post(stack.sandbox + "/_sandbox/webhooks/flush", params={"timeout": 60}, timeout=90).json()
        if answer["drained"]:
            return
    raise ReplayError("the sandbox CRM could not deliver its webhooks to leadbridge")


def score_writes(stack: Stack, since: float, prefix: str = "leadbridge_") -> dict[str, list[dict[str, Any]]]:
    """leadbridge's contact writes since `since`, per contact: [{t, t_ns, leadbridge_* values}] in time order."""
    import requests

    writes = requests.get(stack.sandbox + "/_sandbox/writes", params={"prefix": prefix, "since": since},
                          timeout=300).json()["writes"]
    grouped: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
    for w in writes:
        if w.get("object_type", "contacts") != "contacts":
            continue
        entry = grouped[(w["object_id"], w["t_ns"])]
        entry[w["property"]] = w["value"]
        entry.update(t=w["t"], t_ns=w["t_ns"])
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (oid, _), entry in sorted(grouped.items(), key=lambda kv: kv[0][1]):
        out[oid].append(entry)
    return out


def wait_scored(stack: Stack, sent: dict[str, tuple[int, float]], version: str, since: float, timeout: float,
                progress: Progress) -> dict[str, list[dict[str, Any]]]:
    """Wait until every held-out contact has a score from `version` and the writes have settled; all the writes."""
    task = progress.add_task("live: scored by the promoted model", total=len(sent))
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    done: set[str] = set()
    cursor, seen = since, set[tuple[str, int]]()
    while True:
        # Only the model-version writes, and only new ones: the poll must not load the sandbox it measures.
        fresh = score_writes(stack, cursor, "leadbridge_model_version")
        keys = {(cid, w["t_ns"]) for cid, ws in fresh.items() for w in ws}
        if keys - seen:
            quiet_since = time.monotonic()
            cursor = max(w["t"] for ws in fresh.values() for w in ws)
            seen |= keys
        done |= {cid for cid, ws in fresh.items() if cid in sent
                 and any(w.get("leadbridge_model_version") == version for w in ws)}
        progress.update(task, completed=len(done))
        # Enrichment re-scores a contact once the CRM has been read: wait for the writes to settle too.
        if (len(done) == len(sent) and time.monotonic() - quiet_since >= 5.0) or time.monotonic() > deadline:
            return score_writes(stack, since)
        time.sleep(2.0)


# ---- metrics --------------------------------------------------------------------------------------


def live_metrics(data: Dataset, sent: dict[str, tuple[int, float]], read: dict[str, dict[str, Any]],
                 writes: dict[str, list[dict[str, Any]]], version: str) -> dict[str, Any]:
    """AUC, ECE, lift, grade and reasons shares, lost contacts and latency from what the CRM shows."""
    from scoring.metrics import evaluate

    scored, ys, scores, grades, latencies = [], [], [], [], []
    reasons = 0
    for cid, (row, created) in sent.items():
        props = read.get(cid, {})
        score = props.get("leadbridge_score")
        if score in (None, "") or props.get("leadbridge_model_version") != version:
            continue
        scored.append(cid)
        ys.append(int(data.y[row]))
        scores.append(float(score))
        grades.append(props.get("leadbridge_grade") or "")
        reasons += bool((props.get("leadbridge_reasons") or "").strip())
        # Latency to the first write that showed the final score of the promoted model.
        final = next((w for w in writes.get(cid, ()) if _number(w.get("leadbridge_score")) == float(score)
                      and w.get("leadbridge_model_version", version) == version), None)
        if final is not None:
            latencies.append(final["t"] - created)
    y, p = np.array(ys), np.array(scores) / 100.0
    metrics = evaluate(y, p) if len(scored) else {}
    by_grade: dict[str, dict[str, Any]] = {}
    for g in GRADES:
        members = [yy for yy, gg in zip(ys, grades) if gg == g]
        if members:
            by_grade[g] = {"contacts": len(members), "conversion": round(float(np.mean(members)), 4)}
    n = max(1, len(sent))
    rates = [row["conversion"] for row in by_grade.values()]
    return {
        "live": metrics, "scored": len(scored), "lost": len(sent) - len(scored),
        "graded_share": sum(1 for g in grades if g) / n, "reasons_share": reasons / n,
        "grade_conversion": by_grade,
        # The grades rank as they should: conversion never rises from one (present) grade to the next.
        "grades_fall": len(rates) > 1 and all(a >= b for a, b in zip(rates, rates[1:])),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95) * 1000, 1) if latencies else None,
    }


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ---- the whole run --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", type=Path, default=None, help=f"CSV of leads (default {DEFAULT_CSV})")
    p.add_argument("--label", default=DEFAULT_LABEL, help="0/1 (yes/no, won/lost) outcome column (default Converted)")
    p.add_argument("--open", dest="open_values", nargs="*", default=(),
                   help="label values of rows with no outcome yet, left out (e.g. Engaging Prospecting)")
    p.add_argument("--id", dest="id_column", default=None, help="id column (never a property)")
    p.add_argument("--time", dest="time_column", default=None,
                   help="created-at column: contacts arrive in its order and the held-out rows are the newest")
    p.add_argument("--drop", nargs="*", default=None, help="columns to leave out (default: the X Education leaks)")
    p.add_argument("--join", nargs=2, metavar=("FILE", "COLUMN"), default=None,
                   help="left-join another CSV on COLUMN (e.g. accounts' firmographics)")
    p.add_argument("--fit", nargs="*", default=None,
                   help="columns that describe who the lead is: mapped as fit fields (they train the grade model; "
                        "default for X Education: occupation, specialization, city, country, what matters most, "
                        "how they heard)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of rows held out for the live part")
    p.add_argument("--seed", type=int, default=0, help="split seed (as `leadbridge train --seed`)")
    p.add_argument("--rate", type=float, default=50.0, help="held-out contacts created per second")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the held-out scores")
    p.add_argument("--json", dest="json_path", type=Path, default=None, help="write the report here")
    return p.parse_args(argv)


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Record how long the block took under `name`."""
    started = time.monotonic()
    try:
        yield
    finally:
        seconds[name] = round(time.monotonic() - started, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Replay the CSV through the sandbox and leadbridge and measure."""
    out = console()
    phases: dict[str, float] = {}
    started = time.monotonic()
    data = load(args)
    rng = np.random.default_rng(args.seed)
    out.print(f"{len(data.frame):,} labelled rows, {len(data.columns)} columns as properties; "
              f"{len(data.train_idx):,} history, {len(data.test_idx):,} held out (seed {args.seed})")
    with tempfile.TemporaryDirectory(prefix="leadbridge-replay-") as tmp:
        work = Path(tmp)
        with out.status("starting leadbridge (sandbox mode)"), timed(phases, "start"):
            stack = start_run(work / "data", None)
        try:
            crm = Crm(stack.sandbox)
            with out.status("offline: train --csv on the history rows, score --csv the held-out rows"), \
                    timed(phases, "offline"):
                off = offline(stack, data, work, args.seed)
            out.print(f"offline AUC {fmt(off['offline']['roc_auc'])}, logistic {fmt(off['logistic_regression']['roc_auc'])}")
            with out.status("properties"), timed(phases, "properties"):
                crm.create_properties(data.columns)
            out.print(f"{sum(c.created for c in data.columns)} properties created, "
                      f"{sum(not c.created for c in data.columns)} existing ones reused")
            columns = (TextColumn("{task.description:<42}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=out) as progress:
                with timed(phases, "history"):
                    times = history_times(data, time.time(), rng)
                    ids, won = replay_history(crm, data, times, rng, progress)
                    task = progress.add_task("history: leadbridge ingesting webhooks", total=None)
                    flush_webhooks(stack)
                    state = wait_drained(stack, 1800)
                    progress.update(task, total=1, completed=1)
            out.print(f"history: {len(ids):,} contacts ({won:,} won) replayed from "
                      f"{datetime.fromtimestamp(times.min(), UTC):%Y-%m-%d} to "
                      f"{datetime.fromtimestamp(times.max(), UTC):%Y-%m-%d}; inbox {state['counts']}")
            with out.status("fields discover and map"), timed(phases, "schema"):
                schema = map_schema(stack, data.columns, data.fit)
            out.print(f"schema: {schema['status']}" + (f", {len(schema['mapped'])} mapped, "
                                                      f"{len(schema['skipped'])} skipped" if schema["mapped"] else ""))
            with out.status("backfill hubspot (the records' history)"), timed(phases, "backfill"):
                run_cli(stack, "backfill", "hubspot", "--no-writeback")
            with out.status("train --from-events (maturity window, champion gate)"), timed(phases, "train"):
                report_path = work / "train-events.json"
                run_cli(stack, "train", "--from-events", "--promote", "--maturity-days", str(MATURITY_DAYS),
                        "--seed", str(args.seed), "--report", str(report_path))
                trained = json.loads(report_path.read_text())
                version = trained["version"]
                gate_passed = trained.get("status") == "promoted"
                if not gate_passed:
                    run_cli(stack, "model", "promote", version)
            out.print(f"model {version}: {trained.get('decision_reason')}"
                      + ("" if gate_passed else " -> promoted with `leadbridge model promote`"))
            with Progress(*columns, console=out) as progress, timed(phases, "live"):
                since = time.time()
                sent = replay_live(crm, data, args.rate, progress)
                writes = wait_scored(stack, sent, version, since, args.timeout, progress)
            read = crm.read_scores(list(sent))
            live = live_metrics(data, sent, read, writes, version)
        finally:
            stack.stop()
    report = {
        "csv": str(args.csv or DEFAULT_CSV), "label": args.label, "seed": args.seed,
        "rows": len(data.frame), "rows_test": len(data.test_idx),
        "offline_auc": off["offline"]["roc_auc"], "live_auc": live["live"].get("roc_auc"),
        "lr_auc": off["logistic_regression"]["roc_auc"], "live_ece": live["live"].get("ece"),
        "live_lift_at_10": live["live"].get("lift_at_10"), "graded_share": live["graded_share"],
        "reasons_share": live["reasons_share"], "lost": live["lost"], "p95_ms": live["p95_ms"],
        "grade_conversion": live["grade_conversion"], "grades_fall": live["grades_fall"],
        "offline": off["offline"], "live": live["live"], "logistic_regression": off["logistic_regression"],
        "train_csv": off["train_csv_report"], "p50_ms": live["p50_ms"],
        "model": {"version": version, "gate_passed": gate_passed, "decision": trained.get("decision_reason"),
                  "holdout": trained.get("model"), "training": trained.get("training")},
        "schema": schema,
        "properties": [{"column": c.column, "property": c.name, "kind": c.kind, "type": c.hs_type,
                        "created": c.created} for c in data.columns],
        "phases_seconds": phases, "seconds": round(time.monotonic() - started, 1),
    }
    return report


def show(report: dict[str, Any]) -> None:
    """Print the results table."""
    table = Table(title=f"replay of {Path(report['csv']).name}: {report['rows']:,} rows, {report['rows_test']:,} "
                        f"held out (seed {report['seed']}), {report['seconds']:.0f} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("offline_auc", "live_auc", "lr_auc", "live_ece", "live_lift_at_10", "graded_share", "reasons_share",
                "lost", "p95_ms"):
        table.add_row(key, fmt(report[key]))
    table.add_row("grades fall A -> F", str(report["grades_fall"]))
    table.add_row("model (gate passed)", f"{report['model']['version']} ({report['model']['gate_passed']})")
    console().print(table)
    grades = Table(title="held-out conversion per grade")
    for c in ("grade", "contacts", "conversion"):
        grades.add_column(c, justify="right")
    for g, row in report["grade_conversion"].items():
        grades.add_row(g, fmt(row["contacts"]), fmt(row["conversion"]))
    console().print(grades)
    console().print("phases (s): " + ", ".join(f"{k} {v}" for k, v in report["phases_seconds"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: replay, print, write JSON."""
    return run_and_report(parse_args(argv), run, show, (ReplayError,))


if __name__ == "__main__":
    sys.exit(main())
