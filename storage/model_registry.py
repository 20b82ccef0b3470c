"""The `models` table as the learning loop uses it: record trained bundles, promote, roll back, report drift.

Rows (one per trained bundle; files stay in scoring.registry.ModelRegistry's directory):
- kind "lead": trained on the declared features only (scoring.features), so the live pipeline can
  serve it; "csv": trained from a CSV export (its columns are not what the online store holds), never
  promoted; status candidate | challenger (trained by the loop, kept for inspection) | champion |
  retired.
- Promote and roll back change the champion row and then set the Redis key `CHAMPION_KEY`: every
  worker checks it before each task and swaps the model in (tasks.resources) without a restart;
  a task already running finishes with the model it started with. `sync_champion_key` puts the key
  back in line with the table (beat runs it), e.g. after a promotion made without Redis at hand.
- Roll back restores the version promoted before the current champion (by promoted_at); a second
  roll back walks further back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.feature_schema import serving_problems
from core.keys import CHAMPION_KEY
from core.records import utcnow
from storage.audit import record
from storage.db import Database
from storage.feature_schema import active_schema
from storage.models import ModelVersion

SERVABLE_KINDS = frozenset({"lead"})
METADATA_FILE = "metadata.json"


class ModelRegistryError(Exception):
    """A registry operation cannot be done; the message says why."""


class UnknownModel(ModelRegistryError):
    """No model with that version."""


class NotServable(ModelRegistryError):
    """The model cannot become the champion (wrong kind, missing files, already champion)."""


def clean_json(value: Any) -> Any:
    """`value` with string keys and only values JSON can hold (model metadata and reports)."""
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def record_model(
    session: Session,
    registered: Mapping[str, Any],
    *,
    kind: str,
    status: str = "candidate",
    metrics: Mapping[str, Any] | None = None,
    labelled_outcomes: int | None = None,
    window: tuple[datetime | None, datetime | None] | None = None,
) -> ModelVersion:
    """Insert the `models` row for a bundle `ModelRegistry.register` returned (its dict is `registered`)."""
    if kind not in ("lead", "csv", "fit", "account", "rules"):
        raise ValueError(f"unknown model kind {kind!r}")
    window_meta = registered.get("training_window") or {}
    start, end = window if window is not None else (_when(window_meta.get("start")), _when(window_meta.get("end")))
    outcomes = registered.get("outcomes") or {}
    row = ModelVersion(
        version=str(registered["version"]), kind=kind, status=status, path=str(registered["path"]),
        feature_hash=str(registered.get("feature_hash") or ""), features=list(registered.get("features") or []),
        params=clean_json(dict(registered.get("params") or {})),
        metrics=clean_json(dict(metrics if metrics is not None else registered.get("metrics") or {})),
        labelled_outcomes=int(labelled_outcomes if labelled_outcomes is not None else outcomes.get("labelled", 0)),
        window_start=start, window_end=end, trained_at=_when(registered.get("trained_at")) or utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def list_models(session: Session, kind: str | None = None) -> list[ModelVersion]:
    """Registry rows, newest first."""
    query = select(ModelVersion).order_by(ModelVersion.trained_at.desc(), ModelVersion.id.desc())
    if kind:
        query = query.where(ModelVersion.kind == kind)
    return list(session.scalars(query))


def get_model(session: Session, version: str) -> ModelVersion:
    """One row by version; UnknownModel (naming the known versions) when there is none."""
    row = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).first()
    if row is None:
        known = [r.version for r in list_models(session)[:5]]
        hint = f"; newest known: {', '.join(known)}" if known else "; no model is registered yet"
        raise UnknownModel(f"no model version {version!r}{hint}")
    return row


def champion(session: Session, kind: str = "lead") -> ModelVersion | None:
    """The serving row of a kind, if any."""
    return session.scalars(select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.status == "champion")
                           .order_by(ModelVersion.promoted_at.desc(), ModelVersion.id.desc())).first()


def _lock_kind(session: Session, kind: str) -> list[ModelVersion]:
    # Row locks on PostgreSQL so two promotions cannot both leave a champion; SQLite serialises writers.
    return list(session.scalars(select(ModelVersion).where(ModelVersion.kind == kind).with_for_update()))


def _promote_row(session: Session, row: ModelVersion, actor: str, how: str) -> ModelVersion:
    if row.kind not in SERVABLE_KINDS:
        raise NotServable(f"{row.version} is a {row.kind!r} model (trained on columns the live pipeline does not "
                          "have); only models trained on the declared features (kind 'lead') can serve")
    if row.status == "champion":
        raise NotServable(f"{row.version} is already the champion")
    if not (Path(row.path) / METADATA_FILE).is_file():
        raise NotServable(f"{row.version}'s files are missing at {row.path}; workers could not load it")
    check_schema(session, row)
    _lock_kind(session, row.kind)
    before = champion(session, row.kind)
    for current in session.scalars(select(ModelVersion).where(ModelVersion.kind == row.kind,
                                                              ModelVersion.status == "champion")):
        current.status = "retired"
    row.status = "champion"
    row.promoted_at = utcnow()
    session.flush()
    record(session, actor=actor, action="model.promote", target=f"model:{row.kind}",
           before={"champion": before.version if before else None}, after={"champion": row.version, "how": how})
    return row


def check_schema(session: Session, row: ModelVersion) -> None:
    """Refuse a model that reads mapped features the active feature schema no longer maps alike."""
    try:
        metadata = json.loads((Path(row.path) / METADATA_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NotServable(f"{row.version}'s metadata at {row.path} is unreadable ({type(exc).__name__})") from None
    schema = active_schema(session)
    problems = serving_problems(schema, metadata if isinstance(metadata, dict) else {})
    if problems:
        raise NotServable(f"{row.version} cannot serve under feature schema version {schema.version}: "
                          f"{'; '.join(problems)}. Map those fields again (`leadbridge fields map ...`) or train a "
                          "model under the current schema")


def promote_in_session(session: Session, version: str, actor: str, how: str = "manual") -> ModelVersion:
    """Make `version` the champion inside the caller's transaction (the caller sets the Redis key after commit)."""
    return _promote_row(session, get_model(session, version), actor, how)


def rollback_in_session(session: Session, actor: str, kind: str = "lead") -> ModelVersion:
    """Retire the champion and restore the one promoted before it, inside the caller's transaction."""
    _lock_kind(session, kind)
    current = champion(session, kind)
    if current is None:
        raise NotServable(f"there is no {kind} champion to roll back")
    query = select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.id != current.id,
                                       ModelVersion.promoted_at.is_not(None))
    if current.promoted_at is not None:
        query = query.where(ModelVersion.promoted_at < current.promoted_at)
    previous = session.scalars(query.order_by(ModelVersion.promoted_at.desc())).first()
    if previous is None:
        raise NotServable(f"no earlier {kind} champion to roll back to ({current.version} is the first)")
    if not (Path(previous.path) / METADATA_FILE).is_file():
        raise NotServable(f"cannot roll back to {previous.version}: its files are missing at {previous.path}")
    check_schema(session, previous)
    current.status = "retired"
    previous.status = "champion"  # promoted_at stays, so a second roll back walks further back in time
    session.flush()
    record(session, actor=actor, action="model.rollback", target=f"model:{kind}",
           before={"champion": current.version}, after={"champion": previous.version})
    return previous


def set_champion_key(redis: Any, version: str | None) -> None:
    """Tell every worker which version serves (None: no champion, the rules serve)."""
    if version:
        redis.set(CHAMPION_KEY, version)
    else:
        redis.delete(CHAMPION_KEY)


def promote(db: Database, redis: Any, version: str, actor: str, how: str = "manual") -> ModelVersion:
    """Make `version` the champion and hot-swap it into every worker (the admin's and the CLI's promote)."""
    with db.session(write=True) as session:
        row = promote_in_session(session, version, actor, how)
    set_champion_key(redis, row.version)
    return row


def rollback(db: Database, redis: Any, actor: str, kind: str = "lead") -> ModelVersion:
    """Restore the previous champion and hot-swap it into every worker."""
    with db.session(write=True) as session:
        row = rollback_in_session(session, actor, kind)
    set_champion_key(redis, row.version)
    return row


def sync_champion_key(db: Database, redis: Any) -> str | None:
    """Make the Redis key name the champion row's version (or remove it); returns the champion version."""
    with db.session() as session:
        row = champion(session, "lead")
        version = row.version if row is not None else None
    raw = redis.get(CHAMPION_KEY)
    current = raw.decode() if isinstance(raw, bytes) else raw
    if current != version:
        set_champion_key(redis, version)
    return version


def store_drift_report(session: Session, version: str, report: Mapping[str, Any]) -> ModelVersion:
    """Keep the latest drift report on a model's row: `metrics["drift"]` (feature -> PSI, what the admin
    ranks) and `metrics["drift_report"]` (score PSI, threshold, window, what drifted, when)."""
    row = get_model(session, version)
    metrics = dict(row.metrics or {})
    drift = {k: v for k, v in (report.get("features") or {}).items() if v is not None}
    if report.get("score") is not None:
        drift["score"] = report["score"]
    metrics["drift"] = drift
    metrics["drift_report"] = clean_json(dict(report))
    row.metrics = metrics  # a new dict, so the JSON column is marked changed
    session.flush()
    return row


def describe_row(row: ModelVersion) -> dict[str, Any]:
    """A plain dict of a row (for the CLI and JSON)."""
    metrics = row.metrics or {}
    return {
        "version": row.version, "kind": row.kind, "status": row.status, "path": row.path,
        "roc_auc": metrics.get("roc_auc"), "labelled_outcomes": row.labelled_outcomes,
        "trained_at": row.trained_at.isoformat() if row.trained_at else None,
        "promoted_at": row.promoted_at.isoformat() if row.promoted_at else None,
        "decision": (metrics.get("champion_comparison") or {}).get("decision"),
        "drift_alert": (metrics.get("drift_report") or {}).get("alert"),
    }
