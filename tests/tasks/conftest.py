"""Pipeline fixtures: the sandbox CRM over HTTP and a live pipeline (the webhook app in this process, a real
`leadbridge worker` process consuming from a private broker database, writing to the sandbox CRM)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from storage.db import Database
from storage.models import InboxEvent
from storage.sources import SourceView, create_source
from tasks.resources import Resources
from tests.bridge.conftest import Signer
from tests.processes import start_cli, stop, wait_for
from tests.services import broker_urls, wipe_pipeline

SALESFORCE_ORG = "00D5g000004ABCDEA2"
HUBSPOT_PORTAL = "62515"


@pytest.fixture()
def res(sandbox: SandboxCRM, db: Database, redis_url: str, settings_overrides: dict[str, Any],
        service_urls: ServiceUrls) -> Resources:
    """Worker resources with HubSpot on the test's sandbox CRM, over emptied pipeline tables and keys."""
    client = make_redis_client(redis_url)
    wipe_pipeline(db, client)
    settings = load_settings({**settings_overrides, "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN,
                              "hubspot_base_url": sandbox.base_url}, env_file=None)
    return Resources(settings, service_urls, db, client)


@dataclass
class LivePipeline:
    """Signed posts into the in-process webhook app; a real worker processes them into the sandbox CRM."""

    signer: Signer
    sandbox: SandboxCRM
    db: Database
    redis: Any
    hubspot: SourceView
    salesforce: SourceView
    events: SourceView

    def unfinished(self) -> dict[str, int]:
        """Inbox rows per status other than done/ignored (empty when every acknowledged entry is processed)."""
        with self.db.session() as session:
            return {s: int(c) for s, c in session.execute(
                select(InboxEvent.status, func.count()).where(InboxEvent.status.not_in(["done", "ignored"]))
                .group_by(InboxEvent.status))}

    def settled(self, timeout: float = 120.0) -> None:
        """Wait until nothing is pending in the inbox (fails naming what is left)."""
        try:
            wait_for(lambda: not self.unfinished().get("pending"), timeout, "the inbox draining")
        except AssertionError:
            raise AssertionError(f"inbox not drained: {self.unfinished()}") from None

    def crm_score(self, contact_id: str) -> str | None:
        """The leadbridge_score the sandbox's HubSpot contact shows."""
        return self.sandbox.store.hs_get("contacts", contact_id)["properties"].get("leadbridge_score")

    def writes_since(self, since: float, contact_id: str) -> list[dict[str, Any]]:
        """leadbridge_* writes the sandbox accepted for a contact since `since`."""
        return requests.get(self.sandbox.base_url + "/_sandbox/writes", timeout=5, params={
            "prefix": "leadbridge_", "since": since, "object_id": contact_id}).json()["writes"]


@pytest.fixture()
def worker_env() -> dict[str, str]:
    """Extra environment for the live pipeline's worker (a test module overrides it, e.g. to reach Salesforce)."""
    return {}


@pytest.fixture()
def live_pipeline(db: Database, redis_url: str, service_env: dict[str, str], settings_overrides: dict[str, Any],
                  hubspot_sandbox: SandboxCRM, worker_env: dict[str, str]) -> Iterator[LivePipeline]:
    """The webhook app (in this process) and a real worker (2 processes) on broker database 8."""
    from bridge import create_app

    redis = make_redis_client(redis_url)
    wipe_pipeline(db, redis)
    broker, broker_redis = broker_urls(redis_url, 8)
    make_redis_client(broker_redis).flushdb()
    env = {**service_env, "CELERY_BROKER_URL": broker, "HUBSPOT_ACCESS_TOKEN": DEFAULT_HUBSPOT_TOKEN,
           "HUBSPOT_BASE_URL": hubspot_sandbox.base_url, "LEADBRIDGE_INBOX_SWEEP_AFTER": "2",
           "LEADBRIDGE_MAX_ATTEMPTS": "3", **worker_env}
    env.pop("SLACK_WEBHOOK_URL", None)
    worker = start_cli(["worker", "--concurrency", "2"], env)
    app = create_app({**settings_overrides, "broker_url": broker, "public_url": "https://bridge.example.com"})
    try:
        with db.session() as session:
            sources = {kind: create_source(session, kind=kind, name=f"hostile-{kind}", org_id=org)
                       for kind, org in (("hubspot", HUBSPOT_PORTAL), ("salesforce", SALESFORCE_ORG),
                                         ("events", None))}
        celery = app.extensions["leadbridge"].celery
        wait_for(lambda: celery.control.ping(timeout=0.5), 60, "the worker answering")
        yield LivePipeline(Signer(app.test_client()), hubspot_sandbox, db, redis, sources["hubspot"],
                           sources["salesforce"], sources["events"])
    finally:
        stop(worker)
        app.extensions["leadbridge"].db.dispose()
