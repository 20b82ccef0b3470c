"""Every admin page in a real browser (Playwright driving Debian's Chromium against `leadbridge web`): each GET
route of the admin blueprint, its path parameters filled with real rows made here, at a desktop (1280 px) and a
phone (390 px) width, as an admin and as a viewer (and the log-in page logged out). Each page must answer
without a server error, fit the window (no sideways scrolling), and show no raw JSON and no epoch numbers.

A screenshot of every page goes to $LEADBRIDGE_WALK_SHOTS (default test-output/admin/walk/); with
LEADBRIDGE_README_SHOTS=1 the README's pictures are written to docs/screenshots/ as well.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from core.keys import HEARTBEAT_KEY, RATELIMIT_KEY
from core.records import utcnow
from core.runtime import redis_client as make_redis_client
from storage import measurements
from storage.db import Database
from storage.dead_letters import count_inbox_failure, count_lead_failure
from storage.model_registry import store_drift_report
from storage.models import (Account, AlertRule, AuditEntry, DeadLetter, InboxEvent, Lead, ModelVersion,
                            OutboxItem, ScoreHistory, User)
from storage.sources import create_source
from tests.admin.conftest import OUTPUT, PASSWORD
from tests.admin.learning_data import seed_learning
from tests.admin.value_data import seed_pilot
from tests.crm_ids import with_ids

REPO = Path(__file__).resolve().parents[2]
FIRST = ("Lena", "Omar", "Sofia", "Lukas", "Aiko", "Mateo", "Nora", "Ravi", "Elif", "Jakub", "Chloe", "Tariq")
LAST = ("Novak", "Haddad", "Rossi", "Weber", "Tanaka", "Silva", "Lund", "Iyer", "Kaya", "Dvorak", "Martin")
WIDTHS = (1280, 390)
HEIGHT = {1280: 860, 390: 844}
# Query-string views of one route that render differently enough to walk on their own.
VARIANTS = {"admin.deliveries": ("?tab=inbox", "?tab=outbox", "?tab=dead")}
# Routes that answer with a file to download, not a page (tests/admin/test_value_browser.py downloads it).
DOWNLOADS = {"admin.value_export"}
# An integer of 10 to 13 digits standing alone: epoch seconds or milliseconds shown raw.
EPOCH = re.compile(r"(?<![\d.,])\d{10,13}(?!\d)")

def raw_json(text: str) -> str | None:
    """What in the visible text is JSON shown raw (an object's opening or a \\u00XX escape), if anything."""
    for marker in ('{"', "\\u00"):
        at = text.find(marker)
        if at >= 0:
            return text[max(0, at - 40):at + 60]
    return None


def epoch_number(text: str) -> str | None:
    """An epoch-looking number in the visible text, with its surroundings, if any."""
    found = EPOCH.search(text)
    return text[max(0, found.start() - 40):found.end() + 20] if found else None


def seed(db: Database, redis: Any, models_dir: Path) -> dict[str, Any]:
    """A small but lifelike installation: sources, leads with score histories, an hour of events, writes to the
    CRMs, a dead letter per stage, an alert rule, a serving model with a drift report, three weeks of prequential
    scores and model events, some audit entries, and a pilot with eight weeks of CRM facts.
    Returns the ids the admin's path parameters name."""
    now = utcnow()
    people = [  # first, last, title, country, score, grade, reasons
        ("Ana", "Lopez", "VP Marketing", "Spain", 91, "A", ["+ requested a demo", "+ viewed pricing 4x in 7 days",
                                                            "- no company size known"]),
        ("Jonas", "Berg", "Head of RevOps", "Germany", 78, "B", ["+ opened 5 e-mails in 7 days",
                                                                 "+ attended a webinar"]),
        ("Priya", "Shah", "Founder", "India", 64, "B", ["+ visited 9 pages this week", "- free e-mail domain"]),
        ("Tom", "Avery", "Sales Manager", "United States", 47, "C", ["+ downloaded the buyer's guide",
                                                                      "- no activity in 14 days"]),
        ("Mei", "Chen", "Analyst", "Singapore", 22, "D", ["- student e-mail domain", "- one visit only"]),
    ]
    # And a crowd, so the score distribution and the reasons have a shape.
    pool = [people[i % len(people)][6][j % 2] for i in range(len(people)) for j in range(2)]
    for i in range(35):
        score = (29 + 37 * i) % 97 + 3 if i % 3 else 40 + (11 * i) % 35
        grade = "A" if score >= 85 else "B" if score >= 65 else "C" if score >= 45 else "D" if score >= 25 else "E"
        people.append((FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)], "Marketing Manager", "Germany", score, grade,
                       [pool[i % len(pool)], pool[(i * 3 + 1) % len(pool)]]))
    with db.session() as session:
        hubspot = create_source(session, kind="hubspot", name="hubspot-prod", org_id="62515")
        web = create_source(session, kind="events", name="website-events")
        account = Account(domain="acme.io", name="Acme Analytics", industry="Software", employees=240,
                          country="Spain", properties={})
        session.add(account)
        session.flush()
        leads: list[Lead] = []
        for i, (first, last, title, country, score, grade, reasons) in enumerate(people):
            email = f"{first}.{last}{i if i >= 5 else ''}@acme.io".lower()  # the crowd's names repeat
            lead = Lead(email=email, first_name=first, last_name=last,
                        title=title, country=country, account_id=account.id if i < 2 else None, properties={},
                        score=score, probability=score / 100, grade=grade, reasons=reasons, model_version="m-2024.06",
                        scored_at=now - timedelta(minutes=3), created_at=now - timedelta(days=3),
                        updated_at=now)
            session.add_all(with_ids(lead, hubspot=str(5101 + i)))
            leads.append(lead)
        session.flush()
        for lead in leads:
            lead.external_id = f"u-{lead.id}"  # the website's user id, which its events name
        for lead in leads:  # a score that climbed over two days, a point every few hours
            steps = [max(5, (lead.score or 0) - 30), max(5, (lead.score or 0) - 18), max(5, (lead.score or 0) - 7),
                     lead.score or 0]
            for n, value in enumerate(steps):
                at = now - timedelta(hours=33 - n * 11, minutes=12 - 3 * n)  # the last one minutes ago
                session.add(ScoreHistory(lead_id=lead.id, score=value, probability=value / 100, grade=lead.grade,
                                         reasons=(lead.reasons or [])[:2], model_version="m-2024.06",
                                         trigger="event" if n else "backfill", feature_time=at,
                                         created_at=at + timedelta(milliseconds=300 + 90 * lead.id)))
        # An hour of events: the overview's events per minute, the leads' event lists, the inbox tab.
        kinds = [("property_change", {"lifecyclestage": "marketingqualifiedlead"}),
                 ("page", {"page_class": "pricing", "path": "/pricing"}),
                 ("track", {"event": "Demo Requested"}), ("property_change", {"jobtitle": "VP Marketing"})]
        rows = []
        # The named people's events over the two days their scores climbed; then the crowd's hour of traffic,
        # 12 to 26 events a minute, oldest first so the newest row is the newest event.
        counts = [12 + (minute * 7 + minute // 9) % 6 + minute // 6 for minute in range(60)]
        events = [(lead, kinds[(n + i) % len(kinds)], now - timedelta(hours=hours))
                  for i, lead in enumerate(leads[:5]) for n, hours in enumerate((31, 25, 21, 14, 10, 6.5, 2, 0.9))]
        events += [(leads[5 + n % (len(leads) - 5)], kinds[(n + n // len(leads)) % len(kinds)], at)
                   for n, at in enumerate(now - timedelta(minutes=60 - minute) + timedelta(seconds=60 * k / count + 0.3)
                                          for minute, count in enumerate(counts) for k in range(count))]
        events.sort(key=lambda event: event[2])
        for n, (lead, (event_type, properties), at) in enumerate(events):
            web_event = event_type in ("page", "track")
            rows.append(InboxEvent(
                source_id=web.id if web_event else hubspot.id, dedupe_key=f"walk-{n}",
                crm="web" if web_event else "hubspot", object_type="person" if web_event else "contact",
                object_id=f"u-{lead.id}" if web_event else str(5101 + leads.index(lead)), event_type=event_type,
                email=lead.email, properties=dict(properties), occurred_at=at - timedelta(seconds=1),
                received_at=at, status="done", attempts=1, processed_at=at + timedelta(milliseconds=120 + 37 * (n % 9))))
        dead_row = InboxEvent(source_id=hubspot.id, dedupe_key="walk-dead", crm="hubspot", object_type="contact",
                              object_id="5199", event_type="property_change", email="broken@acme.io",
                              properties={"hs_lead_status": ["not", "a", "string"]},
                              occurred_at=now - timedelta(minutes=3, seconds=1), received_at=now - timedelta(minutes=3),
                              status="pending", attempts=0)
        session.add_all([*rows, dead_row])
        session.flush()
        count_inbox_failure(session, dead_row.id, "AttributeError: 'list' object has no attribute 'strip' "
                                                  "(at fields.py:88)", max_attempts=1)
        count_lead_failure(session, "writeback", leads[3].id, "INVALID_OPTION: Z was not one of the allowed options",
                           crm="hubspot", at_once=True, max_attempts=5, payload={"values": {"grade": "Z"}})
        for n in range(120):  # batched CRM writes every 30 s of the last hour: the charts, the outbox tab
            at = now - timedelta(seconds=30 * n + 10)
            written = 1 + (n // 7) % 3
            sent = at + timedelta(milliseconds=180 + 35 * (n % 9))
            session.add(OutboxItem(target="hubspot", kind="fields", object_type="batch",
                                   payload={"records": written, "written": written,
                                            "latency_ms": [420 + 90 * ((n + k) % 7) for k in range(written)]},
                                   status="sent", attempts=1, created_at=at, updated_at=sent, sent_at=sent))
        session.add(OutboxItem(target="hubspot", kind="fields", object_type="contact", object_id="5104",
                               lead_id=leads[3].id, payload={"values": {"grade": "Z"}}, status="dead", attempts=1,
                               error="INVALID_OPTION: Z was not one of the allowed options", created_at=now,
                               updated_at=now))
        session.add(OutboxItem(target="slack", kind="alert", lead_id=leads[0].id, payload={"rule": "Hot leads"},
                               status="sent", attempts=1, created_at=now - timedelta(minutes=4),
                               updated_at=now - timedelta(minutes=4), sent_at=now - timedelta(minutes=4)))
        rule = AlertRule(name="Hot leads", channel="#sales-hot", threshold=80, cooldown_minutes=1440,
                         routing={"segment": {"grades": ["A", "B"]}}, enabled=True)
        session.add_all([
            rule,
            AlertRule(name="Enterprise in DACH", channel="#sales-dach", threshold=70, cooldown_minutes=720,
                      routing={"segment": {"countries": ["Germany", "Austria", "Switzerland"], "min_employees": 500}},
                      enabled=True),
            AlertRule(name="Demo requests", channel="#sdr-team", threshold=60, cooldown_minutes=240, routing={},
                      enabled=False),
        ])
        for i, (version, status) in enumerate((("m-2024.05", "retired"), ("m-2024.06", "champion"))):
            path = models_dir / version
            path.mkdir(parents=True)
            (path / "metadata.json").write_text(json.dumps({
                "metrics": {"roc_auc": 0.81 + i / 50, "pr_auc": 0.44 + i / 40, "brier": 0.12 - i / 100},
                "baselines": {"logistic_regression": {"roc_auc": 0.76}},
                "feature_importance": {"pricing_views_7d": 3.1, "demo_requested": 2.4, "free_email": -1.2}}))
            session.add(ModelVersion(version=version, kind="lead", status=status, path=str(path),
                                     feature_hash="f" * 64, features=["pricing_views_7d", "demo_requested",
                                                                      "free_email"],
                                     metrics={"roc_auc": 0.81 + i / 50}, labelled_outcomes=640 + 180 * i,
                                     trained_at=now - timedelta(days=9 - 7 * i),
                                     promoted_at=now - timedelta(days=2) if status == "champion" else None))
        session.flush()
        store_drift_report(session, "m-2024.06", {
            "features": {"pricing_views_7d": 0.08, "demo_requested": 0.03, "free_email": 0.02}, "score": 0.05,
            "threshold": 0.25, "drifted": [], "alert": False, "live_rows": 480, "checked_at": now.isoformat()})
        # Three weeks of matured outcomes as each model scored them, drift checks and marked events: the models
        # page's drift and live-quality charts.
        seed_learning(session, [lead.id for lead in leads], now)
        session.add_all([
            AuditEntry(actor="ops@example.com", action="source.create", target=f"source:{hubspot.id}",
                       after={"name": "hubspot-prod", "kind": "hubspot", "enabled": True},
                       created_at=now - timedelta(days=3)),
            AuditEntry(actor="ops@example.com", action="alert_rule.update", target=f"alert_rule:{rule.id}",
                       before={"threshold": 75}, after={"threshold": 80}, created_at=now - timedelta(hours=2)),
        ])
        session.flush()
        # What beat measures every 30 s for the overview's charts, with the backlogs it samples each time.
        for n in range(120):
            measurements.record_slots(session, now - timedelta(seconds=30 * (119 - n)),
                                      backlog=abs(n % 40 - 20) // 4, write_backlog=abs((n + 13) % 30 - 15) // 5)
        ids = {"lead_id": leads[0].id, "source_id": hubspot.id, "rule_id": rule.id, "inbox_id": dead_row.id,
               "letter_id": session.scalar(select(DeadLetter.id).where(DeadLetter.inbox_id == dead_row.id)), "version": "m-2024.06"}
    redis.hset(RATELIMIT_KEY.format(bucket="hubspot:62515"), mapping={"tokens": "187.5", "ts": str(now.timestamp())})
    seed_pilot(db, now)
    return ids


def admin_pages(app: Any, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(endpoint, path) of every GET page of the admin blueprint, path parameters filled from `params`."""
    adapter = app.url_map.bind("localhost")
    pages = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if (not rule.endpoint.startswith("admin.") or "GET" not in (rule.methods or ())
                or rule.endpoint == "admin.login" or rule.endpoint in DOWNLOADS):
            continue
        missing = sorted(set(rule.arguments) - set(params))
        assert not missing, f"{rule.rule}: the walk makes no row for {missing}; add one to seed()"
        path = adapter.build(rule.endpoint, {name: params[name] for name in rule.arguments})
        pages += [(rule.endpoint, path + variant) for variant in VARIANTS.get(rule.endpoint, ("",))]
    return pages


def shots_dir() -> Path:
    """Where the walk's screenshots go."""
    path = Path(os.environ.get("LEADBRIDGE_WALK_SHOTS") or OUTPUT / "walk")
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_page(page: Any, label: str, failures: list[str]) -> None:
    """Add to `failures` what is wrong with the page on screen: sideways scrolling, raw JSON, epoch numbers."""
    wider = int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))
    if wider > 0:
        culprit = page.evaluate("""() => {
            const width = window.innerWidth;
            let worst = null;
            for (const el of document.querySelectorAll('main *')) {
                const right = el.getBoundingClientRect().right;
                if (right > width + 1 && (!worst || right > worst.right)) {
                    worst = {right, tag: el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                             + (el.className && typeof el.className === 'string' ? '.' + el.className : '')};
                }
            }
            return worst ? worst.tag + ' ends at ' + Math.round(worst.right) + ' px' : 'unknown element';
        }""")
        failures.append(f"{label}: {wider} px wider than the window ({culprit})")
    if page.viewport_size["width"] >= 1000:
        # On a desktop nothing may be cut off inside a card either (the overview's CRM budget table once hid its
        # "sent" column behind the card's edge): a card that scrolls sideways hides part of what it shows.
        for card in page.evaluate("""() => [...document.querySelectorAll('.card')]
                .filter(card => card.scrollWidth > card.clientWidth + 1)
                .map(card => (card.id || card.querySelector('h2')?.innerText || 'a card')
                             + ' by ' + (card.scrollWidth - card.clientWidth) + ' px')"""):
            failures.append(f"{label}: content cut off in {card}")
    text = page.inner_text("body")
    for check, found in (("raw JSON", raw_json(text)), ("epoch number", epoch_number(text))):
        if found is not None:
            failures.append(f"{label}: {check} on screen: {found!r}")


def log_in(context: Any, base: str, user: User) -> Any:
    """A page of `context` logged in as `user` through the real form."""
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(base + "/admin/login")
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/admin/")
    return page


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_admin_page_at_desktop_and_phone_widths(web: str, chromium: Any, admin_app: Any,
                                                      clean_db: Database, redis_url: str,
                                                      make_user: Callable[..., User], tmp_path: Path) -> None:
    params = seed(clean_db, make_redis_client(redis_url), tmp_path / "models")
    pages = admin_pages(admin_app, params)
    assert {"admin.overview", "admin.lead", "admin.inbox_event", "admin.dead_letter"} <= {e for e, _ in pages}
    out = shots_dir()
    failures: list[str] = []
    seen = 0

    anonymous = chromium.new_context()
    page = anonymous.new_page()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT[width]})
        page.goto(web + "/admin/login")
        check_page(page, f"logged out {width} px /admin/login", failures)
        page.screenshot(path=str(out / f"anonymous-{width}-login.png"), full_page=True)
    anonymous.close()

    for role in ("admin", "viewer"):
        context = chromium.new_context(viewport={"width": WIDTHS[0], "height": HEIGHT[WIDTHS[0]]})
        page = log_in(context, web, make_user(role))
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": HEIGHT[width]})
            for _endpoint, path in pages:
                label = f"{role} {width} px {path}"
                response = page.goto(web + path)
                assert response is not None, label
                allowed = (200,) if role == "admin" else (200, 403)  # viewers are refused the admin-only pages
                if response.status not in allowed:
                    failures.append(f"{label}: answered {response.status}")
                    continue
                check_page(page, label, failures)
                name = re.sub(r"[^a-z0-9]+", "-", path.removeprefix("/admin").lower()).strip("-") or "overview"
                page.screenshot(path=str(out / f"{role}-{width}-{name}.png"), full_page=True)
                seen += 1
        context.close()
    assert seen == 2 * len(WIDTHS) * len(pages)
    assert not failures, f"{len(failures)} problem(s) on the admin pages:\n" + "\n".join(failures)

    if os.environ.get("LEADBRIDGE_README_SHOTS") == "1":
        readme_shots(chromium, web, make_user("admin", email="revops@example.com"), params, clean_db,
                     make_redis_client(redis_url))


def readme_shots(chromium: Any, base: str, admin: User, params: dict[str, Any], db: Database, redis: Any) -> None:
    """The README's pictures: the overview, a lead, the alert rules (desktop width, top of each page), taken of
    a running installation: workers alive, the walk's deliberately broken rows dealt with."""
    redis.set(HEARTBEAT_KEY, str(time.time()), ex=300)
    with db.session() as session:
        session.execute(update(DeadLetter).values(status="discarded", resolved_by=admin.email))
        session.execute(update(InboxEvent).where(InboxEvent.status == "pending").values(status="discarded"))
    target = REPO / "docs" / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
    page = log_in(context, base, admin)
    for name, path, height in (("overview", "/admin/", 1440), ("lead", f"/admin/leads/{params['lead_id']}", 1000),
                               ("alert-rules", "/admin/alerts", 720)):
        page.set_viewport_size({"width": 1280, "height": height})  # down to the end of a row of cards
        page.goto(base + path)
        page.screenshot(path=str(target / f"{name}.png"), full_page=False)
    context.close()
