"""The models table: record, promote, roll back, with the Redis key the workers follow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.keys import CHAMPION_KEY
from storage.db import Database
from storage.model_registry import (
    NotServable,
    UnknownModel,
    champion,
    promote,
    record_model,
    rollback,
    store_drift_report,
    sync_champion_key,
)
from storage.models import AuditEntry, ModelVersion
from tests.learning.models import train_bundles


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return train_bundles(tmp_path_factory.mktemp("models"), 3)


def key(redis_client: Any) -> str | None:
    raw = redis_client.get(CHAMPION_KEY)
    return raw.decode() if raw else None


def test_promote_and_roll_back(clean: Database, redis_client: Any, bundles: list[dict[str, Any]]) -> None:
    a, b, c = bundles
    with clean.session(write=True) as session:
        for row in bundles:
            record_model(session, row, kind="lead")
    promote(clean, redis_client, a["version"], "test")
    assert key(redis_client) == a["version"]
    promote(clean, redis_client, b["version"], "test")
    promote(clean, redis_client, c["version"], "test")
    with clean.session() as session:
        statuses = {r.version: r.status for r in session.scalars(select(ModelVersion))}
    assert statuses == {a["version"]: "retired", b["version"]: "retired", c["version"]: "champion"}
    assert rollback(clean, redis_client, "test").version == b["version"]
    assert key(redis_client) == b["version"]
    assert rollback(clean, redis_client, "test").version == a["version"]  # a second roll back walks further back
    with pytest.raises(NotServable, match="no earlier lead champion"):
        rollback(clean, redis_client, "test")
    with clean.session() as session:
        assert champion(session).version == a["version"]
        actions = [e.action for e in session.scalars(select(AuditEntry).where(AuditEntry.action.like("model.%"))
                                                     .order_by(AuditEntry.id.desc()).limit(5))]
    assert actions[:2] == ["model.rollback", "model.rollback"]


def test_clear_errors(clean: Database, redis_client: Any, bundles: list[dict[str, Any]]) -> None:
    a, b, _ = bundles
    with clean.session(write=True) as session:
        record_model(session, a, kind="lead")
        record_model(session, b, kind="csv")
    with pytest.raises(UnknownModel, match="no model version 'v-nope'"):
        promote(clean, redis_client, "v-nope", "test")
    with pytest.raises(NotServable, match="'csv' model"):
        promote(clean, redis_client, b["version"], "test")
    with pytest.raises(NotServable, match="no lead champion to roll back"):
        rollback(clean, redis_client, "test")
    promote(clean, redis_client, a["version"], "test")
    with pytest.raises(NotServable, match="already the champion"):
        promote(clean, redis_client, a["version"], "test")
    assert key(redis_client) == a["version"]


def test_missing_files_are_refused(clean: Database, redis_client: Any, bundles: list[dict[str, Any]],
                                   tmp_path: Path) -> None:
    ghost = {**bundles[0], "version": "ghost-1", "path": str(tmp_path / "gone")}
    with clean.session(write=True) as session:
        record_model(session, ghost, kind="lead")
    with pytest.raises(NotServable, match="files are missing"):
        promote(clean, redis_client, "ghost-1", "test")


def test_sync_puts_the_key_back_in_line(clean: Database, redis_client: Any, bundles: list[dict[str, Any]]) -> None:
    a = bundles[0]
    with clean.session(write=True) as session:
        record_model(session, a, kind="lead", status="champion")
    assert key(redis_client) is None
    assert sync_champion_key(clean, redis_client) == a["version"]
    assert key(redis_client) == a["version"]
    with clean.session(write=True) as session:
        session.scalars(select(ModelVersion)).one().status = "retired"
    assert sync_champion_key(clean, redis_client) is None and key(redis_client) is None


def test_drift_report_is_kept_where_the_admin_reads_it(clean: Database, bundles: list[dict[str, Any]]) -> None:
    a = bundles[0]
    with clean.session(write=True) as session:
        record_model(session, a, kind="lead")
        row = store_drift_report(session, a["version"], {"features": {"pricing_views_7d": 0.31, "x": None},
                                                         "score": 0.05, "alert": True, "threshold": 0.2})
        assert row.metrics["drift"] == {"pricing_views_7d": 0.31, "score": 0.05}
        assert row.metrics["drift_report"]["alert"] is True
        assert row.metrics["roc_auc"] == a["metrics"]["roc_auc"]
