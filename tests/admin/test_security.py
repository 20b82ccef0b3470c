"""Security: who may do what, CSRF, sessions, log-in rate limiting, hashed passwords and tokens, secrets at rest."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from bridge.api.endpoints import OPERATIONS
from core.keys import SESSION_KEY, prefix_of
from storage.db import Database
from storage.models import AlertRule, ApiToken, AuditEntry, Source, User
from tests.admin.conftest import PASSWORD, csrf_of, log_in, page_csrf
from tests.conftest import REPO


def _admin_post_rules(app: Any) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin") and "POST" in (rule.methods or ()) and rule.endpoint != "admin.login":
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "x")
            paths.append(path)
    return sorted(paths)


def _fill(rule: str) -> str:
    return re.sub(r"<int:\w+>", "1", re.sub(r"<(\w+)>", lambda m: "hubspot" if m.group(1) == "crm" else "contacts"
                                             if m.group(1) == "object_type" else "v1", rule))


# --- unauthenticated ------------------------------------------------------------------------------


def test_anonymous_pages_redirect_to_log_in(admin_app: Any) -> None:
    client = admin_app.test_client()
    for path in ("/admin/", "/admin/sources", "/admin/audit", "/admin/leads/1"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"], path


def test_anonymous_form_posts_are_refused(admin_app: Any, clean_db: Database) -> None:
    client = admin_app.test_client()
    csrf = csrf_of(client.get("/admin/login").text)  # a real token, but no log-in
    for path in _admin_post_rules(admin_app):
        if path == "/admin/logout":
            continue
        response = client.post(path, data={"csrf_token": csrf, "kind": "events", "name": "nope"})
        assert response.status_code == 401, path
    with clean_db.session() as session:
        assert session.scalars(select(Source)).first() is None


def test_anonymous_api_calls_are_refused(admin_app: Any) -> None:
    client = admin_app.test_client()
    for op in OPERATIONS:
        response = client.open("/api" + _fill(op.rule), method=op.method, json={})
        assert response.status_code == 401, (op.method, op.rule)
        assert response.json["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    bad = client.get("/api/sources", headers={"Authorization": "Bearer lbt_not-a-real-token"})
    assert bad.status_code == 401
    assert client.get("/api/openapi.json").status_code == 200  # the description itself is public


# --- viewers --------------------------------------------------------------------------------------


def test_viewer_is_refused_admin_pages_and_changes(viewer_client: Any, admin_app: Any, clean_db: Database) -> None:
    for path in ("/admin/audit", "/admin/users"):
        assert viewer_client.get(path).status_code == 403, path
    csrf = page_csrf(viewer_client)
    for path in _admin_post_rules(admin_app):
        if path in ("/admin/logout", "/admin/tokens") or path.startswith("/admin/tokens/"):
            continue  # every user manages their own session and tokens
        response = viewer_client.post(path, data={"csrf_token": csrf, "kind": "events", "name": "nope"})
        assert response.status_code == 403, path
    with clean_db.session() as session:
        assert session.scalars(select(Source)).first() is None
        assert session.scalars(select(AuditEntry)).first() is None


def test_viewer_token_reads_but_cannot_change(admin_app: Any, make_token: Callable[[str], str]) -> None:
    client = admin_app.test_client()
    headers = {"Authorization": f"Bearer {make_token('viewer')}"}
    assert client.get("/api/sources", headers=headers).status_code == 200
    assert client.get("/api/me", headers=headers).json["role"] == "viewer"
    admin_ops = [op for op in OPERATIONS if op.role == "admin"]
    assert len(admin_ops) >= 15
    for op in admin_ops:
        response = client.open("/api" + _fill(op.rule), method=op.method, json={}, headers=headers)
        assert response.status_code == 403, (op.method, op.rule)
        assert response.json["error"] == "forbidden"


# --- CSRF -----------------------------------------------------------------------------------------


def test_form_posts_without_or_with_a_wrong_csrf_token_are_refused(admin_client: Any, admin_app: Any,
                                                                   clean_db: Database) -> None:
    for path in _admin_post_rules(admin_app):
        missing = admin_client.post(path, data={"kind": "events", "name": "nope"})
        assert missing.status_code == 400, path
        assert "CSRF" in missing.text
        wrong = admin_client.post(path, data={"kind": "events", "name": "nope", "csrf_token": "forged"})
        assert wrong.status_code == 400, path
    with clean_db.session() as session:
        assert session.scalars(select(Source)).first() is None
    assert admin_client.get("/admin/sources").status_code == 200  # still logged in: logout was refused too


def test_log_in_form_needs_csrf_too(admin_app: Any, make_user: Callable[..., User]) -> None:
    user = make_user("admin")
    client = admin_app.test_client()
    response = client.post("/admin/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


# --- sessions -------------------------------------------------------------------------------------


def test_session_cookie_flags_and_logout_ends_the_session(admin_app: Any, make_user: Callable[..., User]) -> None:
    user = make_user("admin")
    client = admin_app.test_client()
    response = log_in(client, user.email)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    stolen = client.get_cookie("leadbridge_session").value
    csrf = page_csrf(client)
    assert client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 302
    # Replaying the old cookie after log-out gets nowhere: the session record is gone from Redis.
    replay = admin_app.test_client()
    replay.set_cookie("leadbridge_session", stolen)
    assert replay.get("/admin/").status_code == 302


def test_a_session_from_before_the_one_prefix_survives_the_upgrade(admin_app: Any, make_user: Callable[..., User],
                                                                   redis_client: Any,
                                                                   service_env: dict[str, str]) -> None:
    """An upgrade does not log admins out: `leadbridge db upgrade` renames the old session key, TTL and all."""
    client = admin_app.test_client()
    assert log_in(client, make_user("admin").email).status_code == 302
    [key] = [k.decode() for k in redis_client.scan_iter(match=prefix_of(SESSION_KEY) + "*")]
    old = "leadbridge:session:" + key.removeprefix(prefix_of(SESSION_KEY))  # where the last release kept it
    redis_client.rename(key, old)
    ttl = redis_client.ttl(old)
    assert client.get("/admin/sources").status_code == 302  # the new code alone does not find it

    done = subprocess.run([sys.executable, "-m", "cli.main", "db", "upgrade"], env=service_env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not redis_client.exists(old) and 0 < redis_client.ttl(key) <= ttl
    assert client.get("/admin/sources").status_code == 200


def test_secure_cookie_when_served_over_https(settings_overrides: dict[str, Any], make_user: Callable[..., User],
                                              broker: tuple[str, str]) -> None:
    from bridge import create_app

    app = create_app({**settings_overrides, "broker_url": broker[0], "public_url": "https://leadbridge.example.com"})
    user = make_user("admin")
    response = log_in(app.test_client(), user.email)
    assert "Secure" in response.headers["Set-Cookie"]
    app.extensions["leadbridge"].db.dispose()


def test_removed_user_loses_their_session(admin_client: Any, clean_db: Database) -> None:
    with clean_db.session() as session:
        session.delete(session.get(User, admin_client.user.id))
    assert admin_client.get("/admin/").status_code == 302


def test_log_in_redirect_stays_inside_the_admin(admin_app: Any, make_user: Callable[..., User]) -> None:
    user = make_user("admin")
    client = admin_app.test_client()
    page = client.get("/admin/login?next=https://evil.example/admin/")
    response = client.post("/admin/login", data={"email": user.email, "password": PASSWORD,
                                                 "csrf_token": csrf_of(page.text), "next": "https://evil.example/admin/"})
    assert response.headers["Location"] == "/admin/"


# --- log-in -----------------------------------------------------------------------------------------


def test_there_is_no_default_account(admin_app: Any, clean_db: Database) -> None:
    client = admin_app.test_client()
    for email, password in (("admin@example.com", "admin"), ("admin", "admin"), ("admin@localhost", "password")):
        assert log_in(client, email, password).status_code == 401
    with clean_db.session() as session:
        assert session.scalars(select(User)).first() is None


def test_failed_log_ins_are_rate_limited(admin_app: Any, make_user: Callable[..., User]) -> None:
    user = make_user("admin")
    client = admin_app.test_client()
    for _ in range(5):
        assert log_in(client, user.email, "wrong password!").status_code == 401
    blocked = log_in(client, user.email)  # even the right password waits now
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 15 * 60
    assert "too many failed log-in attempts" in blocked.text
    # Another account from the same address is not locked by this one's failures (below the address limit).
    other = make_user("viewer")
    assert log_in(client, other.email).status_code == 302


def test_passwords_and_tokens_are_stored_hashed(admin_client: Any, clean_db: Database) -> None:
    csrf = page_csrf(admin_client, "/admin/tokens")
    created = admin_client.post("/admin/tokens", data={"csrf_token": csrf, "name": "ci"})
    assert created.status_code == 201
    token = re.search(r'id="api-token">([^<]+)<', created.text).group(1)  # type: ignore[union-attr]
    assert token.startswith("lbt_")
    with clean_db.session() as session:
        user = session.get(User, admin_client.user.id)
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        row = session.scalars(select(ApiToken)).one()
        assert row.token_hash != token and token not in row.token_hash
    assert token not in admin_client.get("/admin/tokens").text  # shown once only
    assert admin_client.application.test_client().get(
        "/api/me", headers={"Authorization": f"Bearer {token}"}).json["email"] == admin_client.user.email
    revoke = admin_client.post(f"/admin/tokens/{row.id}/revoke", data={"csrf_token": csrf})
    assert revoke.status_code == 302
    assert admin_client.application.test_client().get(
        "/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# --- secrets at rest --------------------------------------------------------------------------------


def test_secrets_are_encrypted_at_rest_and_never_logged_or_audited(
    admin_app: Any, make_token: Callable[[str], str], clean_db: Database, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = admin_app.test_client()
    headers = {"Authorization": f"Bearer {make_token('admin')}"}
    created = client.post("/api/sources", json={"kind": "events", "name": "ev"}, headers=headers)
    assert created.status_code == 201
    secret = created.json["secret"]
    rotated = client.post(f"/api/sources/{created.json['id']}/rotate-secret", json={"overlap_hours": 1},
                          headers=headers).json["secret"]
    slack = "https://hooks.slack.com/services/T0/B0/topsecretvalue"
    assert client.post("/api/alert-rules", json={"name": "r", "channel": "#c", "webhook_url": slack},
                       headers=headers).status_code == 201
    with clean_db.session() as session:
        source = session.scalars(select(Source)).one()
        assert source.secret.startswith("enc1:") and source.previous_secret.startswith("enc1:")
        assert rotated not in source.secret and secret not in source.previous_secret
        rule = session.scalars(select(AlertRule)).one()
        assert "topsecretvalue" not in str(rule.routing)
        audit = " ".join(str((e.before, e.after)) for e in session.scalars(select(AuditEntry)))
    for plaintext in (secret, rotated, slack, "topsecretvalue"):
        assert plaintext not in audit
        assert all(plaintext not in record.getMessage() and plaintext not in str(record.__dict__)
                   for record in caplog.records)
    listing = client.get("/api/sources", headers=headers).json["items"][0]
    assert "secret" not in listing and listing["secret_hint"].endswith(rotated[-4:])
    assert client.get("/api/alert-rules", headers=headers).json["items"][0]["webhook_url_hint"].endswith("alue")
