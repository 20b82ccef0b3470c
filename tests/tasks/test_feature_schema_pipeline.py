"""The company's own CRM fields in the live score, end to end: map properties, train on a CSV export whose
columns carry them, promote, and a real worker scores HubSpot webhooks by those properties."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select

from storage.db import Database
from storage.models import FeatureSchemaVersion, Lead, LeadCrmId, ModelVersion, ScoreHistory
from tests.hostile import hubspot_event, raw_json
from tests.processes import REPO, wait_for
from tests.tasks.conftest import LivePipeline

DAY_MS = 86_400_000


@pytest.fixture()
def no_models(db: Database) -> Iterator[None]:
    """No registered model or saved feature schema before and after (other tests expect neither)."""
    def wipe() -> None:
        with db.session(write=True) as session:
            session.execute(delete(ModelVersion))
            session.execute(delete(FeatureSchemaVersion))
    wipe()
    yield
    wipe()


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)


def write_export(path: Path, rows: int = 700, seed: int = 3) -> None:
    """A CRM export: budget and trial recency drive conversion; a colour column is noise nobody mapped."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Lead Id", "Created", "Budget Amount", "TRIAL_STARTED", "Favourite Colour", "Converted"])
        for i in range(rows):
            created = 1_700_000_000_000 + i * 3_600_000
            rich = rng.random() < 0.5
            budget = rng.integers(80_000, 400_000) if rich else rng.integers(0, 5_000)
            trial_days = rng.integers(0, 10) if rng.random() < 0.6 else rng.integers(100, 400)
            p = 0.1 + 0.6 * rich + 0.25 * (trial_days < 10)
            created_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created / 1000))
            out.writerow([f"L{i}", created_iso, f"{budget:,}", str(created - int(trial_days) * DAY_MS),
                          str(rng.choice(["red", "blue"])), "yes" if rng.random() < p else "no"])


def latest(db: Database, lead_id: int) -> ScoreHistory | None:
    with db.session() as session:
        return session.scalars(select(ScoreHistory).where(ScoreHistory.lead_id == lead_id)
                               .order_by(ScoreHistory.id.desc())).first()


def test_mapped_fields_trained_from_a_csv_serve_live(no_models: None, live_pipeline: LivePipeline,
                                                     service_env: dict[str, str], tmp_path: Path) -> None:
    p = live_pipeline
    env = service_env
    done = cli(env, "fields", "map", "hubspot", "contacts", "budget", "--kind", "numeric", "--label", "Budget Amount")
    assert done.returncode == 0, done.stderr
    done = cli(env, "fields", "map", "hubspot", "Contact", "trial_started", "--kind", "date")
    assert done.returncode == 0 and "feature schema version 2" in done.stdout, done.stderr
    refused = cli(env, "fields", "map", "hubspot", "contacts", "leadbridge_score", "--kind", "numeric")
    assert refused.returncode == 1 and "leadbridge writes its score there" in refused.stderr
    assert "Traceback" not in refused.stderr
    listed = cli(env, "fields", "list", "--json")
    assert '"version": 2' in listed.stdout and '"trial_started"' in listed.stdout
    history = json.loads(cli(env, "fields", "history", "--json").stdout)
    assert [(v["version"], [f["feature"] for f in v["fields"]]) for v in history] == \
        [(2, ["budget", "trial_started"]), (1, ["budget"])]

    export = tmp_path / "export.csv"
    write_export(export)
    trained = cli(env, "train", "--csv", str(export), "--label", "Converted", "--id", "Lead Id", "--time", "Created",
                  "--live", "--models-dir", str(tmp_path / "models"), timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "Budget Amount -> budget (numeric)" in trained.stderr
    assert "TRIAL_STARTED -> trial_started (date)" in trained.stderr
    assert "left out (not mapped, --live): Favourite Colour" in trained.stderr
    assert "as kind 'lead'" in trained.stdout
    version = re.search(r"model (\S+) saved to", trained.stdout).group(1)  # type: ignore[union-attr]
    # The same export scores offline too: its columns of mapped fields are read as in training.
    scored = cli(env, "score", "--csv", str(export), "--model", version, "--models-dir", str(tmp_path / "models"),
                 "--out", str(tmp_path / "scored.csv"))
    assert scored.returncode == 0, scored.stderr
    with (tmp_path / "scored.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:6] == ["Lead Id", "Created", "Budget Amount", "TRIAL_STARTED", "Favourite Colour",
                                 "Converted"]
    by_budget = [int(r["score"]) for r in rows if int(r["Budget Amount"].replace(",", "")) >= 80_000]
    low_budget = [int(r["score"]) for r in rows if int(r["Budget Amount"].replace(",", "")) < 5_000]
    assert np.mean(by_budget) > np.mean(low_budget) + 20
    done = cli(env, "model", "promote", version)
    assert done.returncode == 0, done.stderr

    # Two contacts change their mapped properties in HubSpot: a big budget and a fresh trial, and the opposite.
    now = int(time.time() * 1000)
    contacts = {}
    for name, budget, trial in (("rich", "250,000", now - 2 * DAY_MS), ("poor", "900", now - 300 * DAY_MS)):
        contact = p.sandbox.store.hs_create("contacts", {"email": f"{name}@acme.io"})
        contacts[name] = contact["id"]
        body = raw_json([hubspot_event(objectId=int(contact["id"]), propertyName="budget", propertyValue=budget),
                         hubspot_event(objectId=int(contact["id"]), propertyName="trial_started",
                                       propertyValue=str(trial))])
        response = p.signer.hubspot(p.hubspot, body)
        assert response.status_code == 202, response.get_data(as_text=True)

    def lead_of(contact_id: str) -> int | None:
        with p.db.session() as session:
            return session.scalars(select(LeadCrmId.lead_id).where(LeadCrmId.crm == "hubspot",
                                                                   LeadCrmId.object_id == contact_id)).first()

    def scored_by_model() -> bool:
        ids = [lead_of(c) for c in contacts.values()]
        return all(i is not None and (row := latest(p.db, i)) is not None and row.model_version == version
                   for i in ids)

    wait_for(scored_by_model, 90, "both leads scored by the CSV-trained model")
    rich, poor = (latest(p.db, lead_of(contacts[n])) for n in ("rich", "poor"))  # type: ignore[arg-type]
    assert rich is not None and poor is not None
    assert rich.score >= poor.score + 30, (rich.score, poor.score)
    assert any("budget amount" in reason for reason in rich.reasons), rich.reasons  # the mapped label
    with p.db.session() as session:
        assert session.scalars(select(Lead.model_version).where(Lead.id == rich.lead_id)).one() == version

    # Unmapping a field the serving model reads is refused, and the champion keeps serving.
    refused = cli(env, "fields", "unmap", "hubspot", "contacts", "budget")
    assert refused.returncode == 1 and f"serving lead model {version}" in refused.stderr
    listed = cli(env, "model", "list", "--json")
    assert f'"version": "{version}"' in listed.stdout and '"status": "champion"' in listed.stdout
