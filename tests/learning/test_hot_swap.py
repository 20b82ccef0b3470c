"""Promotion reaches a running `leadbridge worker` without a restart, and no queued work is dropped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from storage.db import Database
from storage.model_registry import record_model
from storage.models import Lead, ScoreHistory
from tasks.celery_app import create_celery
from tests.learning.models import train_bundles
from tests.processes import REPO, start_cli, stop, wait_for
from tests.services import broker_urls

BROKER_DB = 8


@pytest.fixture(params=["score"])
def worker(request: pytest.FixtureRequest, service_env: dict[str, str], redis_url: str,
           settings_overrides: dict[str, Any], clean: Database) -> Iterator[dict[str, Any]]:
    """A real worker on one queue, with a private broker database and a low outcome minimum."""
    broker, broker_redis = broker_urls(redis_url, BROKER_DB)
    make_redis_client(broker_redis).flushdb()
    env = {**service_env, "CELERY_BROKER_URL": broker, "LEADBRIDGE_MIN_OUTCOMES": "10",
           "LEADBRIDGE_MIN_POSITIVES": "5"}
    proc = start_cli(["worker", "--concurrency", "2", "--queues", request.param], env)
    app = create_celery(load_settings({**settings_overrides, "broker_url": broker}, env_file=None))
    try:
        wait_for(lambda: proc.poll() is None and app.control.ping(timeout=0.5), 60, "the worker answering a ping")
        yield {"app": app, "proc": proc, "env": env}
    finally:
        stop(proc)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def latest_version(db: Database, lead_id: int) -> str | None:
    with db.session() as session:
        return session.scalars(select(ScoreHistory.model_version).where(ScoreHistory.lead_id == lead_id)
                               .order_by(ScoreHistory.id.desc())).first()


@pytest.mark.slow
def test_a_promoted_model_serves_in_the_running_worker(worker: dict[str, Any], clean: Database,
                                                       tmp_path: Path) -> None:
    a, b = train_bundles(tmp_path / "models", 2)
    with clean.session(write=True) as session:
        record_model(session, a, kind="lead")
        record_model(session, b, kind="lead")
        leads = [Lead(external_id=f"hot{i}", properties={}) for i in range(30)]
        session.add_all(leads)
        session.flush()
        ids = [lead.id for lead in leads]
    app, proc, env = worker["app"], worker["proc"], worker["env"]
    pid = proc.pid

    done = cli(env, "model", "promote", a["version"])
    assert done.returncode == 0, done.stderr
    app.send_task("tasks.score.score_leads", args=[[ids[0]]])
    wait_for(lambda: latest_version(clean, ids[0]) == a["version"], 60, "a score from the promoted model A")

    # Work queued before, during and after the promotion of B: every lead is scored, none is lost.
    for lead_id in ids[1:15]:
        app.send_task("tasks.score.score_leads", args=[[lead_id]])
    done = cli(env, "model", "promote", b["version"])
    assert done.returncode == 0, done.stderr
    for lead_id in ids[15:]:
        app.send_task("tasks.score.score_leads", args=[[lead_id]])

    def all_scored() -> bool:
        with clean.session() as session:
            return session.scalar(select(func.count(func.distinct(ScoreHistory.lead_id)))
                                  .where(ScoreHistory.lead_id.in_(ids))) == len(ids)

    wait_for(all_scored, 60, "every queued lead scored")
    versions = {latest_version(clean, lead_id) for lead_id in ids}
    assert versions <= {a["version"], b["version"]}
    assert latest_version(clean, ids[-1]) == b["version"]  # queued after the promotion: the new model
    # Re-scoring the first lead now uses B too, in the same worker process.
    app.send_task("tasks.score.score_leads", args=[[ids[0]]])
    wait_for(lambda: latest_version(clean, ids[0]) == b["version"], 60, "lead 0 re-scored by model B")

    done = cli(env, "model", "rollback")
    assert done.returncode == 0 and a["version"] in done.stdout, done.stderr
    app.send_task("tasks.score.score_leads", args=[[ids[0]]])
    wait_for(lambda: latest_version(clean, ids[0]) == a["version"], 60, "lead 0 re-scored by model A after rollback")
    assert proc.poll() is None and proc.pid == pid  # never restarted


def test_cli_errors_are_clear(service_env: dict[str, str], clean: Database) -> None:
    result = cli(service_env, "model", "promote", "v-does-not-exist")
    assert result.returncode == 1
    assert "error: no model version 'v-does-not-exist'" in result.stderr and "Traceback" not in result.stderr
    result = cli(service_env, "model", "rollback")
    assert result.returncode == 1 and "no lead champion to roll back" in result.stderr
    result = cli(service_env, "model", "promote")
    assert result.returncode == 2 and "Missing argument 'VERSION'" in result.stderr
    result = cli(service_env, "model", "list")
    assert result.returncode == 0 and "no models yet" in result.stdout
    result = cli(service_env, "train", "--from-events", "--csv", "x.csv")
    assert result.returncode == 2 and "leave out --csv" in result.stderr
    result = cli(service_env, "train", "--from-events")
    assert result.returncode == 1 and "not enough labels yet" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["learning"], indirect=True)
def test_beat_tasks_run_in_a_worker(worker: dict[str, Any], clean: Database, redis_client: Any) -> None:
    """The learning queue's tasks as beat sends them: retrain (forced, as on drift), then the key sync."""
    from core.keys import CHAMPION_KEY
    from storage.models import ModelVersion
    from tests.learning.conftest import store_world, world_events

    events, outcomes = world_events(leads=300)
    store_world(clean, events, outcomes)
    app = worker["app"]
    app.send_task("tasks.learning.retrain", kwargs={"reason": "drift", "force": True})

    def champion_row() -> ModelVersion | None:
        with clean.session() as session:
            return session.scalars(select(ModelVersion).where(ModelVersion.status == "champion")).first()

    wait_for(champion_row, 180, "a model trained, recorded and promoted by the worker")
    row = champion_row()
    assert row is not None and row.kind == "lead" and row.metrics["training"]["reason"] == "drift"
    assert redis_client.get(CHAMPION_KEY).decode() == row.version
    redis_client.delete(CHAMPION_KEY)  # say a promotion happened where Redis was not reachable
    app.send_task("tasks.learning.sync_champion")
    wait_for(lambda: redis_client.get(CHAMPION_KEY) == row.version.encode(), 60, "the champion key restored")
    # A scheduled run right after is not due yet: no second model.
    def run(name: str) -> Any:
        return app.send_task(name, ignore_result=False).get(timeout=120)

    assert run("tasks.learning.retrain") == {"status": "skipped", "reason": "not due"}
    assert run("tasks.learning.check_drift")["status"] in ("ok", "alert")  # no live leads: a report with a note
    assert run("tasks.learning.score_accounts") == {"scored": 0, "changed": 0, "hubspot": 0, "salesforce": 0}
    assert run("tasks.learning.collect_outcomes") == {}  # no CRM configured
    with clean.session() as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 1
    assert worker["proc"].poll() is None
