"""The admin pages render for admins and viewers, and their forms change what they say they change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.records import utcnow
from core.runtime import redis_client as make_redis_client
from storage.db import Database
from storage.model_registry import store_drift_report
from storage.models import (
    AlertRule,
    AuditEntry,
    FieldMapping,
    InboxEvent,
    Lead,
    ModelVersion,
    ScoreHistory,
    Source,
    User,
)
from tests.admin.conftest import logged_in_client, page_csrf
from tests.crm_ids import with_ids

PAGES = ("/admin/", "/admin/sources", "/admin/mappings", "/admin/fields", "/admin/alerts", "/admin/deliveries",
         "/admin/deliveries?tab=outbox", "/admin/deliveries?tab=dead", "/admin/leads", "/admin/models",
         "/admin/tokens")
ADMIN_PAGES = ("/admin/audit", "/admin/users")


def test_every_page_renders_for_an_admin(admin_client: Any) -> None:
    for path in PAGES + ADMIN_PAGES:
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert "text/html" in response.content_type
        assert admin_client.user.email in response.text
        assert response.headers["Cache-Control"] == "no-store"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_viewer_sees_read_pages_without_change_forms(viewer_client: Any) -> None:
    for path in PAGES:
        assert viewer_client.get(path).status_code == 200, path
    sources = viewer_client.get("/admin/sources").text
    assert "Create source" not in sources
    nav = viewer_client.get("/admin/").text
    assert "/admin/audit" not in nav and "/admin/users" not in nav


def test_source_page_flow(admin_client: Any, clean_db: Database, redis_url: str) -> None:
    csrf = page_csrf(admin_client, "/admin/sources")
    created = admin_client.post("/admin/sources", data={"csrf_token": csrf, "kind": "hubspot", "name": "hs-ui",
                                                        "org_id": "62515", "signature_version": "v3"})
    # Post/Redirect/Get: the POST answers with a redirect, so refreshing the page shown cannot create it again.
    assert created.status_code == 303
    with clean_db.session() as session:
        source = session.scalars(select(Source).where(Source.name == "hs-ui")).one()
    assert created.headers["Location"].endswith(f"/admin/sources/{source.id}/secret")
    kept = [key for key in make_redis_client(redis_url).scan_iter(match="lb:secret-once:*")]
    assert len(kept) == 1 and 0 < make_redis_client(redis_url).ttl(kept[0]) <= 600
    shown = admin_client.get(created.headers["Location"]).text
    secret = _code(shown, "webhook-secret")
    assert len(secret) >= 32 and secret in shown and "Source created" in shown
    assert f"/webhooks/hubspot/{source.slug}" in _code(shown, "webhook-url")
    assert "Target URL" in shown  # the vendor's setup steps
    again = admin_client.get(created.headers["Location"]).text  # a refresh: shown once, never again
    assert secret not in again and "shown once already" in again and secret[-4:] in _code(again, "secret-hint")
    assert not list(make_redis_client(redis_url).scan_iter(match="lb:secret-once:*"))
    detail = admin_client.get(f"/admin/sources/{source.id}").text
    assert secret not in detail and secret[-4:] in _code(detail, "secret-hint")
    assert 'name="confirm"' in detail

    # Rotation needs its confirmation box; without it nothing changes and the page says why.
    unconfirmed = admin_client.post(f"/admin/sources/{source.id}/rotate", data={"csrf_token": csrf, "overlap_hours": "2"},
                                    headers={"Referer": f"http://localhost/admin/sources/{source.id}"},
                                    follow_redirects=True)
    assert unconfirmed.status_code == 200 and "confirm the rotation" in unconfirmed.text
    with clean_db.session() as session:
        assert session.get(Source, source.id).previous_secret is None

    # Rotation shows the new secret once (after a redirect) and keeps the old one valid for the overlap.
    rotated = admin_client.post(f"/admin/sources/{source.id}/rotate",
                                data={"csrf_token": csrf, "overlap_hours": "2", "confirm": "yes"})
    assert rotated.status_code == 303 and rotated.headers["Location"].endswith(f"/admin/sources/{source.id}/secret")
    shown = admin_client.get(rotated.headers["Location"]).text
    new_secret = _code(shown, "webhook-secret")
    assert new_secret != secret and "Secret rotated" in shown and "still accepted until" in shown
    assert new_secret not in admin_client.get(rotated.headers["Location"]).text
    with clean_db.session() as session:
        row = session.get(Source, source.id)
        assert row.previous_secret_expires_at - utcnow() > timedelta(hours=1.9)

    disabled = admin_client.post(f"/admin/sources/{source.id}/enabled", data={"csrf_token": csrf, "enabled": "false"})
    assert disabled.status_code == 302
    with clean_db.session() as session:
        assert session.get(Source, source.id).enabled is False
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["source.create", "source.rotate_secret", "source.disable"]


def test_a_kept_secret_is_encrypted_and_only_for_the_session_that_made_it(admin_app: Any, admin_client: Any,
                                                                        make_user: Any, clean_db: Database,
                                                                        redis_url: str) -> None:
    created = admin_client.post("/admin/sources", data={"csrf_token": page_csrf(admin_client, "/admin/sources"),
                                                        "kind": "events", "name": "web", "secret": "whsec_" + "k" * 40})
    assert created.status_code == 303
    redis = make_redis_client(redis_url)
    (key,) = list(redis.scan_iter(match="lb:secret-once:*"))
    assert b"kkkk" not in redis.get(key) and redis.get(key).startswith(b"enc1:")  # encrypted like stored secrets
    other_admin = logged_in_client(admin_app, make_user("admin"))
    assert "k" * 40 not in other_admin.get(created.headers["Location"]).text  # another session sees nothing
    assert "k" * 40 in admin_client.get(created.headers["Location"]).text  # the one that made it does, once


def test_bad_form_input_is_explained_on_the_page(admin_client: Any, clean_db: Database) -> None:
    csrf = page_csrf(admin_client, "/admin/sources")
    response = admin_client.post("/admin/sources", data={"csrf_token": csrf, "kind": "salesforce", "name": "sf"},
                                 headers={"Referer": "http://localhost/admin/sources"}, follow_redirects=True)
    assert response.status_code == 200
    assert "needs --org-id" in response.text or "organization id" in response.text
    with clean_db.session() as session:
        assert session.scalars(select(Source)).first() is None
    missing = admin_client.get("/admin/sources/999999")
    assert missing.status_code == 404 and "no source 999999" in missing.text


def test_alert_rule_forms(admin_client: Any, clean_db: Database) -> None:
    csrf = page_csrf(admin_client, "/admin/alerts")
    response = admin_client.post("/admin/alerts", data={
        "csrf_token": csrf, "name": "Hot", "threshold": "80", "channel": "#hot", "cooldown_minutes": "60",
        "grades": ["A", "B"], "countries": "Germany, France", "enabled": "on",
        "webhook_url": "https://hooks.slack.com/services/T1/B1/secretpart"})
    assert response.status_code == 302
    with clean_db.session() as session:
        rule = session.scalars(select(AlertRule)).one()
        assert rule.threshold == 80 and rule.routing["segment"] == {"grades": ["A", "B"],
                                                                   "countries": ["Germany", "France"]}
        assert rule.routing["webhook_url"].startswith("enc1:") and "secretpart" not in json.dumps(rule.routing)
    listing = admin_client.get("/admin/alerts").text
    assert "secretpart" not in listing and "•" in listing
    updated = admin_client.post(f"/admin/alerts/{rule.id}", data={
        "csrf_token": csrf, "name": "Hot", "threshold": "90", "channel": "#hot", "cooldown_minutes": "60",
        "grades": ["A"], "enabled": "on"})
    assert updated.status_code == 302
    with clean_db.session() as session:
        rule = session.get(AlertRule, rule.id)
        assert rule.threshold == 90 and rule.routing["webhook_url"].startswith("enc1:")  # empty field kept it
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "alert_rule.update")).one()
        assert entry.before["threshold"] == 80 and entry.after["threshold"] == 90
    too_high = admin_client.post("/admin/alerts", data={"csrf_token": csrf, "name": "x", "threshold": "101",
                                                        "channel": "#x"}, follow_redirects=True)
    assert "between 0 and 100" in too_high.text


def test_mapping_form_saves_overrides(admin_client: Any, clean_db: Database) -> None:
    csrf = page_csrf(admin_client, "/admin/mappings")
    fields = {"field_score": "custom_score", "field_grade": "leadbridge_grade", "field_tier": ""}
    response = admin_client.post("/admin/mappings/hubspot/contacts", data={"csrf_token": csrf, **fields})
    assert response.status_code == 302
    with clean_db.session() as session:
        rows = {r.output: r.field_name for r in session.scalars(select(FieldMapping))}
    assert rows == {"score": "custom_score", "tier": ""}  # the default grade name needs no row
    bad = admin_client.post("/admin/mappings/hubspot/contacts", data={"csrf_token": csrf, "field_score": "Bad Name"},
                            follow_redirects=True)
    assert "is not a HubSpot property name" in bad.text


def test_mapping_form_maps_the_trend_and_accounts_show_no_movement(admin_client: Any, clean_db: Database) -> None:
    page = admin_client.get("/admin/mappings").text
    contacts = page.split('id="mapping-hubspot-contacts"', 1)[1].split("</form>", 1)[0]
    companies = page.split('id="mapping-hubspot-companies"', 1)[1].split("</form>", 1)[0]
    assert 'value="leadbridge_score_trend"' in contacts and "score_trend" not in companies
    csrf = page_csrf(admin_client, "/admin/mappings")
    response = admin_client.post("/admin/mappings/hubspot/contacts",
                                 data={"csrf_token": csrf, "field_score_trend": "lead_heat"})
    assert response.status_code == 302
    with clean_db.session() as session:
        rows = {r.output: r.field_name for r in session.scalars(select(FieldMapping))}
    assert rows == {"score_trend": "lead_heat"}
    assert 'value="lead_heat"' in admin_client.get("/admin/mappings").text


def test_lead_page_shows_score_history_and_moves(admin_client: Any, clean_db: Database) -> None:
    now = utcnow()
    with clean_db.session() as session:
        lead = Lead(email="ana@acme.io", first_name="Ana", last_name="Lopez", properties={},
                    score=81, grade="A", reasons=["+ viewed pricing 4x in 7 days", "- free e-mail domain"],
                    model_version="m1", scored_at=now)
        session.add_all(with_ids(lead, hubspot="501"))
        session.flush()
        for minutes, score in ((30, 40), (20, 62), (10, 81)):
            session.add(ScoreHistory(lead_id=lead.id, score=score, probability=score / 100, grade="A",
                                     reasons=[f"+ reason {score}"], model_version="m1", trigger="event",
                                     feature_time=now - timedelta(minutes=minutes),
                                     created_at=now - timedelta(minutes=minutes) + timedelta(seconds=2)))
        session.add(InboxEvent(dedupe_key="k-501-1", crm="hubspot", object_type="contact", object_id="501",
                               event_type="property_change", email="ana@acme.io", properties={"lifecyclestage": "lead"},
                               occurred_at=now - timedelta(minutes=15), received_at=now - timedelta(minutes=15),
                               status="done", attempts=1))
        lead_id = lead.id
    found = admin_client.get("/admin/leads?q=ana@acme").text
    assert f"/admin/leads/{lead_id}" in found and "81" in found
    assert f"/admin/leads/{lead_id}" in admin_client.get("/admin/leads?q=501").text
    page = admin_client.get(f"/admin/leads/{lead_id}").text
    assert '<span id="lead-score">81</span>' in page
    assert "viewed pricing 4x in 7 days" in page and "<polyline" in page
    # The stored "+ "/"- " sign is shown once, as the list marker (the admin once showed "+ + ...").
    assert '<li class="pos">viewed pricing 4x in 7 days</li>' in page
    assert '<li class="neg">free e-mail domain</li>' in page and "+ viewed" not in page
    assert "(+19)" in page and "(+22)" in page
    assert "property_change" in page  # the event between the 62 and the 81


def test_lead_page_shows_how_the_score_last_moved(admin_client: Any, clean_db: Database) -> None:
    now = utcnow()
    with clean_db.session() as session:
        moved = Lead(email="bo@acme.io", properties={}, score=52, grade="B", reasons=["+ requested a demo"],
                     model_version="m1", scored_at=now, previous_score=40, score_trend="improving",
                     score_changed_at=datetime(2026, 12, 5, 9, 30, tzinfo=UTC),
                     score_change_reason="+12: requested a demo")
        first = Lead(email="cy@acme.io", properties={}, score=30, grade="C", reasons=["+ viewed docs"],
                     model_version="m1", scored_at=now)
        session.add_all([moved, first])
        session.flush()
        moved_id, first_id = moved.id, first.id
    page = admin_client.get(f"/admin/leads/{moved_id}").text
    assert '<dd id="lead-previous-score">40</dd>' in page
    assert '<span class="up">+12</span>' in page and '<span id="lead-score-trend">improving</span>' in page
    assert "over 24 h" in page and '<time datetime="2026-12-05T09:30:00+00:00">2026-12-05 09:30:00</time>' in page
    assert '<dd id="lead-score-change-reason">+12: requested a demo</dd>' in page
    # A first score has nothing to compare with.
    assert "No earlier score to compare with yet." in admin_client.get(f"/admin/leads/{first_id}").text


def test_models_page_promotes_and_rolls_back(admin_client: Any, clean_db: Database, tmp_path: Path) -> None:
    now = utcnow()
    with clean_db.session() as session:
        for i, status in enumerate(("champion", "candidate")):
            path = tmp_path / f"m{i}"
            path.mkdir()
            (path / "metadata.json").write_text(json.dumps({
                "metrics": {"roc_auc": 0.8 + i / 100}, "baselines": {"logistic_regression": {"roc_auc": 0.75}},
                "feature_importance": {"pricing_views_7d": 3.5, "free_email": -1.2}}))
            session.add(ModelVersion(version=f"v{i}", kind="lead", status=status, path=str(path), feature_hash="f" * 64,
                                     features=["a", "b"], metrics={"roc_auc": 0.8 + i / 100},
                                     trained_at=now - timedelta(days=2 - i),
                                     promoted_at=now - timedelta(days=1) if status == "champion" else None))
        session.flush()
        # What the learning loop's drift check stores on the champion.
        store_drift_report(session, "v0", {"features": {"pricing_views_7d": 0.31, "free_email": 0.02}, "score": 0.12,
                                           "threshold": 0.25, "drifted": ["pricing_views_7d"], "alert": True,
                                           "live_rows": 480, "checked_at": now.isoformat()})
    page = admin_client.get("/admin/models").text
    assert "Serving (lead): v0" in page and "pricing_views_7d" in page and "0.750" in page
    assert "drift alert" in page and "on 480 live leads" in page and "0.310" in page
    overview = admin_client.get("/admin/").text
    assert "v0: drift in pricing_views_7d" in overview
    csrf = page_csrf(admin_client, "/admin/models")
    assert admin_client.post("/admin/models/v1/promote", data={"csrf_token": csrf}).status_code == 302
    with clean_db.session() as session:
        status = {m.version: m.status for m in session.scalars(select(ModelVersion))}
    assert status == {"v0": "retired", "v1": "champion"}
    assert admin_client.post("/admin/models/rollback", data={"csrf_token": csrf, "kind": "lead"}).status_code == 302
    with clean_db.session() as session:
        status = {m.version: m.status for m in session.scalars(select(ModelVersion))}
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert status == {"v0": "champion", "v1": "retired"}
    assert actions == ["model.promote", "model.rollback"]


def _code(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}">') + len(f'id="{element_id}">')
    return html[start:html.index("</code>", start)]


def test_users_page_adds_users_and_guards_the_admin_itself(admin_client: Any, clean_db: Database) -> None:
    csrf = page_csrf(admin_client, "/admin/users")
    added = admin_client.post("/admin/users", data={"csrf_token": csrf, "email": "new@example.com", "role": "viewer",
                                                    "password": "a long enough password"})
    assert added.status_code == 302
    with clean_db.session() as session:
        new = session.scalars(select(User).where(User.email == "new@example.com")).one()
        assert new.role == "viewer" and new.password_hash.startswith("$argon2id$")
    assert admin_client.post(f"/admin/users/{new.id}/role", data={"csrf_token": csrf, "role": "admin"}).status_code == 302
    me = admin_client.user.id
    refused = admin_client.post(f"/admin/users/{me}/delete", data={"csrf_token": csrf}, follow_redirects=True)
    assert "cannot remove yourself" in refused.text
    demote = admin_client.post(f"/admin/users/{me}/role", data={"csrf_token": csrf, "role": "viewer"},
                               follow_redirects=True)
    assert "cannot change the role of yourself" in demote.text
    with clean_db.session() as session:
        assert session.get(User, me).role == "admin" and session.get(User, new.id).role == "admin"
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["user.add", "user.role"]
