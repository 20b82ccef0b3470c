"""The model registry as the admin sees it: versions, metrics against baselines, importance, drift,
promote and roll back.

Promote and roll back are storage.model_registry's (the same functions `leadbridge model` uses): the
champion row changes in the caller's transaction, and after the commit `announce_champion` sets the
Redis key the workers watch, so they swap the model in without a restart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy.orm import Session

from services import Conflict, NotFound, OperationError
from storage import model_registry as registry
from storage.models import ModelVersion

KINDS = ("lead", "csv")
METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_at_10")
LOWER_IS_BETTER = frozenset({"brier", "ece"})
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class ModelInfo:
    """A registry row plus what its bundle's metadata adds (baselines, importance, drift)."""

    row: ModelVersion
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    importance: list[tuple[str, float]]
    drift: list[tuple[str, float]]
    metadata_error: str | None
    drift_check: dict[str, Any] | None = None  # the latest drift check: when, threshold, alert, what drifted


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _ranked(value: Any) -> list[tuple[str, float]]:
    numbers = _numbers(value)
    return sorted(numbers.items(), key=lambda kv: -abs(kv[1]))


def read_metadata(path: str) -> tuple[dict[str, Any], str | None]:
    """The bundle's metadata.json (plain JSON, never unpickled), or an explanation why it is unreadable."""
    meta_path = Path(path) / METADATA_FILE
    try:
        data = json.loads(meta_path.read_text())
    except FileNotFoundError:
        return {}, f"{meta_path} not found"
    except (OSError, json.JSONDecodeError) as exc:
        return {}, f"{meta_path}: {type(exc).__name__}"
    return (data if isinstance(data, dict) else {}), None


def describe(row: ModelVersion) -> ModelInfo:
    """Metrics from the row, with baselines, feature importance and drift from the row or the bundle."""
    meta, error = read_metadata(row.path) if row.path else ({}, "no bundle path recorded")
    stored = row.metrics or {}
    metrics = _numbers(stored) or _numbers(meta.get("metrics"))
    baselines_raw = stored.get("baselines") or meta.get("baselines") or {}
    baselines = {str(name): _numbers(values) for name, values in baselines_raw.items()} if isinstance(
        baselines_raw, dict) else {}
    importance = _ranked(stored.get("feature_importance") or meta.get("feature_importance"))
    drift = _ranked(stored.get("drift") or stored.get("psi") or meta.get("drift"))
    report = stored.get("drift_report")
    check = None
    if isinstance(report, dict):
        check = {"checked_at": str(report.get("checked_at") or ""), "alert": bool(report.get("alert")),
                 "threshold": report.get("threshold") if isinstance(report.get("threshold"), (int, float)) else None,
                 "drifted": [str(d) for d in report.get("drifted") or []],
                 "live_rows": int(report["live_rows"]) if isinstance(report.get("live_rows"), int) else None,
                 "note": str(report["note"]) if report.get("note") else None}
    return ModelInfo(row, metrics, baselines, importance, drift, error, check)


def list_models(session: Session, kind: str | None = None) -> list[ModelVersion]:
    """Registry rows, newest first."""
    return registry.list_models(session, kind)


def get_model(session: Session, version: str) -> ModelVersion:
    """One registry row by version, or NotFound."""
    if not version or len(version) > 64:
        raise NotFound(f"no model version {version!r}")
    try:
        return registry.get_model(session, version)
    except registry.UnknownModel as exc:
        raise NotFound(str(exc)) from None


def promote(session: Session, actor: str, version: str) -> ModelVersion:
    """Make `version` the champion of its kind (the previous one is retired), audited; see `announce_champion`."""
    get_model(session, version)
    try:
        return registry.promote_in_session(session, version, actor)
    except registry.NotServable as exc:
        raise Conflict(str(exc)) from None


def rollback(session: Session, actor: str, kind: str = "lead") -> ModelVersion:
    """Retire the champion and restore the version promoted before it, audited; see `announce_champion`."""
    if kind not in KINDS:
        raise OperationError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    try:
        return registry.rollback_in_session(session, actor, kind)
    except registry.NotServable as exc:
        raise Conflict(str(exc)) from None


def announce_champion(redis: Redis, row: ModelVersion) -> bool:
    """After the commit: tell the workers which lead model serves (they swap on their next task); False if Redis
    could not be told (beat's key sync repairs it)."""
    if row.kind not in registry.SERVABLE_KINDS:
        return True
    try:
        registry.set_champion_key(redis, row.version)
    except Exception:  # noqa: BLE001 - the table is right; the periodic key sync repairs the key
        return False
    return True
