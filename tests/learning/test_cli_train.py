"""`leadbridge train` records models rows: --from-events as kind lead, --csv as kind csv (never served)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from storage.db import Database
from storage.models import ModelVersion
from tests.learning.conftest import store_world, world_events
from tests.processes import REPO

LEADS_CSV = REPO / "tests" / "fixtures" / "scoring" / "leads_small.csv"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)


def test_train_from_events_records_a_lead_model(service_env: dict[str, str], clean: Database, tmp_path: Path) -> None:
    events, outcomes = world_events(leads=300)
    store_world(clean, events, outcomes)
    report = tmp_path / "report.json"
    env = {**service_env, "LEADBRIDGE_MIN_OUTCOMES": "50", "LEADBRIDGE_MIN_POSITIVES": "10"}
    result = run(env, "train", "--from-events", "--report", str(report), "--maturity-days", "60", "--promote")
    assert result.returncode == 0, result.stderr
    assert "logistic regression" in result.stdout and "rules baseline" in result.stdout
    data = json.loads(report.read_text())
    assert {"rows", "positives", "version", "model", "baselines", "champion_comparison", "status"} <= set(data)
    assert data["status"] == "promoted" and data["training"]["maturity_days"] == 60
    with clean.session() as session:
        row = session.scalars(select(ModelVersion)).one()
    assert row.kind == "lead" and row.status == "champion" and row.version == data["version"]
    assert row.labelled_outcomes == data["rows"] and Path(row.path, "model.ubj").is_file()


def test_csv_training_is_recorded_as_csv_and_cannot_serve(service_env: dict[str, str], clean: Database,
                                                          tmp_path: Path) -> None:
    result = run(service_env, "train", "--csv", str(LEADS_CSV), "--label", "converted", "--id", "lead_id",
                 "--drop", "status_after_call", "--models-dir", str(tmp_path / "models"))
    assert result.returncode == 0, result.stderr
    assert "recorded in the models table as kind 'csv'" in result.stdout
    with clean.session() as session:
        row = session.scalars(select(ModelVersion)).one()
    assert row.kind == "csv" and row.status == "candidate" and row.metrics["roc_auc"] > 0.5
    refused = run(service_env, "model", "promote", row.version)
    assert refused.returncode == 1 and "only models trained on the declared features" in refused.stderr


def test_csv_training_without_a_database_keeps_the_files(tmp_path: Path, service_env: dict[str, str]) -> None:
    env = {k: v for k, v in service_env.items() if k != "DATABASE_URL"}
    env["LEADBRIDGE_DATA_DIR"] = str(tmp_path / "fresh")
    result = run(env, "train", "--csv", str(LEADS_CSV), "--label", "converted", "--id", "lead_id",
                 "--drop", "status_after_call", "--models-dir", str(tmp_path / "models"))
    assert result.returncode == 0, result.stderr
    assert "not recorded in the models table: no database yet" in result.stdout
    assert "leadbridge model register" in result.stdout
    assert not (tmp_path / "fresh" / "leadbridge.db").exists()


def test_prequential_and_drift_commands(service_env: dict[str, str], clean: Database, tmp_path: Path) -> None:
    from storage.models import ScoreHistory
    from tests.learning.conftest import DAY, T0

    events, outcomes = world_events(leads=200)
    leads = store_world(clean, events, outcomes)
    with clean.session(write=True) as session:
        for user, lead_id in leads.items():
            won = outcomes.get(user, (False, None))[0]
            # A live score at the lead's first day, better for those who converted later.
            session.add(ScoreHistory(lead_id=lead_id, score=70 if won else 30, probability=0.7 if won else 0.3,
                                     grade=None, reasons=[], model_version="rules:test", feature_time=T0 - DAY))
    out = tmp_path / "preq.json"
    result = run(service_env, "model", "prequential", "--window-days", "60", "--step-days", "30", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "prequential" in result.stdout and "roc_auc" in result.stdout
    report = json.loads(out.read_text())
    assert report["tested"] == report["labels"] == len(leads)
    assert report["overall"]["roc_auc"] == 1.0 and report["models"] == {"rules:test": len(leads)}
    assert report["windows"] and all(w["rows"] for w in report["windows"][:1])
    assert "ADWIN on the prequential error" in result.stdout and report["adwin"]["detections"] >= 0
    result = run(service_env, "model", "drift")
    assert result.returncode == 1 and "no champion with a drift reference" in result.stderr
    listed = run(service_env, "model", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
