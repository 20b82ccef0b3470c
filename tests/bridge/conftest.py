"""Webhook test helpers: sources in the real database, signed posts, and a view of the real broker queue."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from core.runtime import redis_client as make_redis_client
from core.signatures import (
    hmac_signature_header,
    hubspot_v1_signature,
    hubspot_v2_signature,
    hubspot_v3_signature,
)
from storage.db import Database
from storage.models import Account, InboxEvent, Lead, Source
from storage.sources import SourceView, create_source
from tests import services

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BROKER_DB = 5  # webhook tests publish to their own broker database, so no worker consumes what they inspect


def fixture_bytes(relative: str) -> bytes:
    """A payload fixture's raw bytes."""
    return (FIXTURES / relative).read_bytes()


@pytest.fixture()
def clean_tables(db: Database) -> Iterator[None]:
    """Empty the tables webhook tests write to, before and after each test."""

    def wipe() -> None:
        with db.session() as session:
            for model in (InboxEvent, Lead, Account, Source):
                session.execute(delete(model))

    wipe()
    yield
    wipe()


@pytest.fixture()
def broker_urls(redis_url: str) -> tuple[str, str]:
    """(broker URL, redis-py URL) of a separate database on the test Redis, used as this test's broker."""
    return services.broker_urls(redis_url, BROKER_DB)


@pytest.fixture()
def webhook_app(settings_overrides: dict[str, Any], broker_urls: tuple[str, str], clean_tables: None):  # type: ignore[no-untyped-def]
    """The app wired to the test database and Redis, publishing tasks to the private broker database."""
    from bridge import create_app

    make_redis_client(broker_urls[1]).flushdb()
    app = create_app(
        {
            **settings_overrides,
            "broker_url": broker_urls[0],
            "public_url": "https://bridge.example.com",
            "max_body_bytes": 64 * 1024,
        }
    )
    yield app
    app.extensions["leadbridge"].db.dispose()


@pytest.fixture()
def queued(broker_urls: tuple[str, str]) -> Callable[[str], list[dict[str, Any]]]:
    """Read the task messages waiting in a queue of the private broker: [{"task", "args", "kwargs"}]."""

    def read(queue: str) -> list[dict[str, Any]]:
        client = make_redis_client(broker_urls[1])
        found = []
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            found.append({"task": message["headers"]["task"], "args": args, "kwargs": kwargs})
        return found

    return read


@pytest.fixture()
def make_source(db: Database) -> Callable[..., SourceView]:
    """Create a source in the test database."""

    def make(kind: str, **kwargs: Any) -> SourceView:
        with db.session() as session:
            return create_source(
                session, kind=kind, name=kwargs.pop("name", f"{kind}-{uuid.uuid4().hex[:6]}"), **kwargs
            )

    return make


class Signer:
    """Builds correctly signed requests for each scheme from a source's secret (nothing pasted)."""

    def __init__(self, client: Any, base: str = "https://bridge.example.com") -> None:
        self.client = client
        self.base = base

    def _post(self, *args: Any, **kwargs: Any) -> Any:
        # buffered: the response is closed at once, running close callbacks (the queue hand-off) as a server would
        return self.client.post(*args, buffered=True, **kwargs)

    def hubspot(
        self,
        source: SourceView,
        body: bytes,
        *,
        version: str = "v3",
        timestamp_ms: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        path = source.webhook_path()
        secret = secret or source.secret
        assert secret
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        if version == "v3":
            sig = {
                "X-HubSpot-Signature-v3": hubspot_v3_signature(secret, "POST", self.base + path, body, ts),
                "X-HubSpot-Request-Timestamp": str(ts),
            }
        elif version == "v2":
            sig = {
                "X-HubSpot-Signature": hubspot_v2_signature(secret, "POST", self.base + path, body),
                "X-HubSpot-Signature-Version": "v2",
            }
        else:
            sig = {
                "X-HubSpot-Signature": hubspot_v1_signature(secret, body),
                "X-HubSpot-Signature-Version": "v1",
            }
        return self._post(
            path, data=body, headers={**sig, **(headers or {})}, content_type=content_type
        )

    def events(
        self,
        source: SourceView,
        body: bytes,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        msg_id: str | None = None,
    ) -> Any:
        from datetime import datetime

        from standardwebhooks import Webhook

        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        ts = datetime.fromtimestamp(timestamp if timestamp is not None else time.time(), tz=UTC)
        signature = Webhook(secret or source.secret).sign(msg_id, ts, body.decode())
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(ts.timestamp())),
            "webhook-signature": signature,
        }
        return self._post(
            source.webhook_path(), data=body, headers=headers, content_type="application/json"
        )

    def salesforce_json(self, source: SourceView, body: bytes, *, timestamp: int | None = None) -> Any:
        assert source.secret
        header = hmac_signature_header(
            source.secret, body, timestamp if timestamp is not None else int(time.time())
        )
        return self._post(
            source.webhook_path(),
            data=body,
            headers={"X-Leadbridge-Signature": header},
            content_type="application/json",
        )

    def salesforce_soap(self, source: SourceView, body: bytes) -> Any:
        return self._post(
            source.webhook_path(),
            data=body,
            content_type="text/xml; charset=utf-8",
            headers={"SOAPAction": '""'},
        )


@pytest.fixture()
def signed(webhook_app) -> Signer:  # type: ignore[no-untyped-def]
    """A Signer posting through the webhook app's test client."""
    return Signer(webhook_app.test_client())
