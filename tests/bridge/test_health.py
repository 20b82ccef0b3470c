"""Health probes: /healthz always answers; /readyz names the failing part and recovers with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.redis_server import EmbeddedRedis


def test_healthz(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_ok(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"redis": "ok", "database": "ok"}


def test_unknown_route_is_json_404(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_readyz_follows_redis_down_and_back(tmp_path: Path, settings_overrides: dict[str, Any]) -> None:
    from bridge import create_app

    # A Redis of this test's own, so stopping it disturbs nothing else.
    server = EmbeddedRedis(tmp_path / "own-redis")
    server.start()
    app = create_app({**settings_overrides, "redis_url": server.url})
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200
        server.stop()
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.get_json()["failing"] == ["redis"]
        assert down.get_json()["checks"]["database"] == "ok"
        server.start()
        assert client.get("/readyz").status_code == 200
    finally:
        server.stop()


def test_readyz_names_an_unmigrated_database(tmp_path: Path, settings_overrides: dict[str, Any]) -> None:
    from bridge import create_app

    app = create_app({**settings_overrides, "database_url": f"sqlite:///{tmp_path}/empty.db"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["database"]
    assert "leadbridge db upgrade" in body["checks"]["database"]
