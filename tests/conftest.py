"""Shared fixtures: real Redis and a real database, embedded by default, external when asked.

Set LEADBRIDGE_TEST_DATABASE_URL (a PostgreSQL server URL; a fresh database is created on it) and
LEADBRIDGE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15; it is flushed) to run the suite against
external services; `make test-external` and CI do that. Without them: embedded Redis and SQLite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis as redis_lib

from core.redis_server import EmbeddedRedis
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from storage.db import Database
from tests.services import migrated_database

if TYPE_CHECKING:
    from tests.pii import World

REPO = Path(__file__).resolve().parent.parent

# The suite must never pick up a developer's own services or credentials from the environment.
for _name in ("REDIS_URL", "DATABASE_URL", "CELERY_BROKER_URL", "HUBSPOT_ACCESS_TOKEN", "SLACK_WEBHOOK_URL",
              "SALESFORCE_USERNAME", "SALESFORCE_SESSION_ID"):
    os.environ.pop(_name, None)
os.environ["LEADBRIDGE_ENV_FILE"] = ""
# One encryption key for the test process and every process it starts (secrets encrypted at rest).
os.environ.setdefault("LEADBRIDGE_ENCRYPTION_KEY", "7K4dnPqY8t2m3oQhR0v5W1xZ6bC9fGjL2sA4eN8uT0k=")


def external_mode() -> bool:
    """True when the suite runs against external PostgreSQL and Redis."""
    return bool(os.environ.get("LEADBRIDGE_TEST_DATABASE_URL") or os.environ.get("LEADBRIDGE_TEST_REDIS_URL"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh leadbridge data directory for the whole session (also this process's, so keys kept there match)."""
    path = tmp_path_factory.mktemp("leadbridge-data")
    os.environ["LEADBRIDGE_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def redis_url(data_dir: Path) -> Iterator[str]:
    """URL of a real Redis: the external test server (flushed) or an embedded one started here."""
    external = os.environ.get("LEADBRIDGE_TEST_REDIS_URL")
    if external:
        make_redis_client(external).flushdb()
        yield external
        return
    server = EmbeddedRedis(data_dir)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def database_url(data_dir: Path) -> Iterator[str]:
    """URL of a real, migrated database: a fresh PostgreSQL database, or SQLite in the data dir."""
    with migrated_database(data_dir) as url:
        yield url


@pytest.fixture(scope="session")
def service_urls(redis_url: str, database_url: str) -> ServiceUrls:
    """The Redis, broker and database URLs every test process shares."""
    broker = "redis+socket://" + redis_url[len("unix://"):] if redis_url.startswith("unix://") else redis_url
    return ServiceUrls(redis_url=redis_url, broker_url=broker, database_url=database_url)


@pytest.fixture(scope="session")
def service_env(service_urls: ServiceUrls, data_dir: Path) -> dict[str, str]:
    """Environment for leadbridge subprocesses (workers, web) pointing at the test services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBRIDGE_TEST_")}
    env.update(service_urls.as_env())
    env["LEADBRIDGE_DATA_DIR"] = str(data_dir)
    env["LEADBRIDGE_LOG_LEVEL"] = "WARNING"
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.fixture(scope="session")
def settings_overrides(service_urls: ServiceUrls, data_dir: Path) -> dict[str, Any]:
    """Settings overrides for create_app and friends in tests."""
    return {
        "data_dir": data_dir,
        "redis_url": service_urls.redis_url,
        "broker_url": service_urls.broker_url,
        "database_url": service_urls.database_url,
        "secret_key": "test-secret-key",
    }


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    """The migrated test database."""
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture()
def sandbox() -> Iterator[SandboxCRM]:
    """A fresh sandbox CRM (HubSpot, Salesforce and Slack endpoints) on a free local port."""
    crm = SandboxCRM()
    crm.start(port=0)
    yield crm
    crm.stop()


@pytest.fixture()
def hubspot_sandbox(sandbox: SandboxCRM) -> SandboxCRM:
    """The test's sandbox CRM with leadbridge's HubSpot properties provisioned (what writebacks set)."""
    from connectors.hubspot.client import HubSpotConnector

    HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).provision_fields()
    return sandbox


@pytest.fixture()
def world(db: Database, redis_url: str, settings_overrides: dict[str, Any],
          service_urls: ServiceUrls) -> Iterator[World]:
    """Clean tables and keys, two sources and the app on a private broker database (see tests.pii)."""
    from tests.pii import make_world

    yield from make_world(db, redis_url, settings_overrides, service_urls)


@pytest.fixture()
def redis_client(redis_url: str) -> redis_lib.Redis:
    """A client of the test Redis."""
    return make_redis_client(redis_url)


@pytest.fixture()
def app(settings_overrides: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The Flask app wired to the test services."""
    from bridge import create_app

    flask_app = create_app(settings_overrides)
    flask_app.testing = True
    yield flask_app
    flask_app.extensions["leadbridge"].db.dispose()


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    """A Flask test client."""
    return app.test_client()


@pytest.fixture(scope="session")
def worker_process(service_env: dict[str, str], settings_overrides: dict[str, Any]) -> Iterator[subprocess.Popen[bytes]]:
    """A real `leadbridge worker` process consuming every queue, stopped at the end of the session."""
    from core.settings import load_settings
    from tasks.celery_app import create_celery

    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--concurrency", "2"], env=service_env, cwd=REPO,
        start_new_session=True,
    )
    celery = create_celery(load_settings(settings_overrides, env_file=None))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early with code {proc.returncode}")
        if celery.control.ping(timeout=0.5):
            break
    else:
        raise RuntimeError("worker did not answer a ping within 60 s")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
