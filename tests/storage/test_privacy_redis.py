"""Forget leaves no Redis key about the person: every per-lead key the code writes today is purged.

Two nets: a person taken through the real pipeline (ingest, enrichment from the sandbox CRM over HTTP,
scoring, alert rules, a writeback flush, repair claims) and then forgotten, after which no key name or
value in Redis mentions their lead id, e-mail or ids; and a census of the key templates in the source,
so a per-lead key added later fails here until storage.privacy purges it too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.hubspot.client import HubSpotConnector
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from core.records import utcnow
from core.runtime import ServiceUrls
from core.settings import load_settings
from storage.db import Database
from storage.models import AlertRule, InboxEvent, Lead
from storage.privacy import find_person, forget_in_redis, forget_person
from tasks.alerts import fire_alert_rules
from tasks.ingest import enrich_new_leads, ingest_rows
from tasks.maintenance import REENRICHED_KEY, RESCORED_KEY
from tasks.resources import Resources, claim_repairs
from tasks.score import score_and_store
from tasks.writeback import INFLIGHT_KEY, RECONCILED_KEY, flush_once
from tests.pii import BOB, DANA, World, hubspot_event, make_world, redis_containing, segment

REPO = Path(__file__).resolve().parents[2]
LEAD_ID = 7700123  # distinctive, so a search for it in Redis finds nothing by chance
CONTACT_ID = "7700456"
# Placeholders that stand for a person in a key template: a lead id, a CRM / web id or an e-mail.
PERSON_PLACEHOLDERS = {"id", "lead", "lead_id", "contact", "contact_id", "email", "ref", "user", "user_id"}


@pytest.fixture()
def world(db: Database, redis_url: str, settings_overrides: dict[str, Any],
          service_urls: ServiceUrls) -> Iterator[World]:
    yield from make_world(db, redis_url, settings_overrides, service_urls)


@pytest.fixture()
def sandbox() -> Iterator[SandboxCRM]:
    crm = SandboxCRM()
    crm.start(port=0)
    yield crm
    crm.stop()


def test_no_redis_key_mentions_a_forgotten_lead(world: World, db: Database, sandbox: SandboxCRM,
                                                settings_overrides: dict[str, Any],
                                                service_urls: ServiceUrls) -> None:
    client = world.res.redis
    settings = load_settings({**settings_overrides, "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN,
                              "hubspot_base_url": sandbox.base_url}, env_file=None)
    res = Resources(settings, service_urls, db, client)
    HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).provision_fields()
    sandbox.store.hs_counters["contacts"] = int(CONTACT_ID) - 1
    assert sandbox.store.hs_create("contacts", {"email": DANA, "firstname": "Dana", "jobtitle": "VP Marketing",
                                                "company": "Initech"})["id"] == CONTACT_ID
    with db.session() as session:
        now = utcnow()
        session.add(Lead(id=LEAD_ID, email=DANA, properties={}, created_at=now, updated_at=now))
        session.add(AlertRule(name="everyone", threshold=1, channel="#sales", cooldown_minutes=60, routing={},
                              enabled=True))

    world.deliver_events([
        segment("identify", "u_dana", DANA, traits={"email": DANA, "firstName": "Dana", "company": "Initech"}),
        segment("page", "u_dana", DANA, properties={"url": "https://example.com/pricing"}),
        segment("track", "u_dana", DANA, event="Demo Requested", properties={}),
        segment("identify", "u_bob", BOB, traits={"email": BOB, "firstName": "Bob"}),
    ])
    at = int(utcnow().timestamp() * 1000)
    world.deliver_hubspot([hubspot_event("contact.propertyChange", int(CONTACT_ID), at - 2000,
                                         propertyName="email", propertyValue=DANA)])
    with db.session() as session:
        pending = list(session.scalars(select(InboxEvent.id).where(InboxEvent.status == "pending")))
    with db.session(write=True) as session:
        result = ingest_rows(session, pending, res)
    assert LEAD_ID in result.leads
    assert enrich_new_leads(res, result.new_leads) >= 1  # lb:enriched:hubspot:<contact id>
    changes = score_and_store(res, sorted(result.leads), "event", mark_writes=True)  # lb:dirty:hubspot
    assert fire_alert_rules(res, changes) >= 1  # lb:alert:cool:<rule>:<lead>
    assert flush_once(res, "hubspot") >= 1  # lb:written:hubspot
    assert sandbox.store.hs_get("contacts", CONTACT_ID)["properties"]["leadbridge_score"]
    claim_repairs(client, [RESCORED_KEY.format(id=LEAD_ID), REENRICHED_KEY.format(id=LEAD_ID),
                           RECONCILED_KEY.format(crm="hubspot", id=LEAD_ID)], timedelta(seconds=60))
    client.hset(INFLIGHT_KEY.format(crm="hubspot"), LEAD_ID, '{"crm_id": "x"}')  # a write under way
    client.sadd("lb:dirty:hubspot", LEAD_ID)
    mentions = redis_containing(client, str(LEAD_ID))
    assert len(mentions) >= 8, mentions  # the net can see the keys at all
    assert redis_containing(client, DANA) and redis_containing(client, CONTACT_ID)

    with db.session(write=True) as session:
        person = find_person(session, emails=[DANA])
        assert person.lead_ids == {LEAD_ID}
        forget_person(session, person, redis=client, actor="test")

    for needle in (str(LEAD_ID), DANA, CONTACT_ID, "u_dana"):
        assert redis_containing(client, needle) == [], needle
    assert redis_containing(client, BOB)  # the control keeps hers


def key_templates() -> set[str]:
    """Every Redis key template in the source ("lb:..." / "leadbridge:..." strings and f-strings)."""
    found: set[str] = set()
    for package in ("core", "tasks", "storage", "scoring", "connectors", "bridge", "cli"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name == "privacy.py" and path.parent.name == "storage":
                continue  # the purge's own patterns
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                text = None
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = node.value
                elif isinstance(node, ast.JoinedStr):
                    parts = []
                    for value in node.values:
                        if isinstance(value, ast.Constant):
                            parts.append(str(value.value))
                        elif isinstance(value, ast.FormattedValue):
                            inner = value.value
                            name = inner.id if isinstance(inner, ast.Name) else (
                                inner.attr if isinstance(inner, ast.Attribute) else "value")
                            parts.append("{" + name + "}")
                    text = "".join(parts)
                if text and re.match(r"^(lb|leadbridge):[\w:{}*.-]*$", text):
                    found.add(text)
    return found


def test_every_per_person_key_template_in_the_code_is_purged(redis_client: Any) -> None:
    templates = key_templates()
    per_person = sorted(t for t in templates if set(re.findall(r"\{(\w+)\}", t)) & PERSON_PLACEHOLDERS)
    # The census sees the keys it must: a repair claim, a cooldown, the enrichment cache, the feature traits.
    assert {"lb:rescored:{id}", "lb:alert:cool:{rule}:{lead}", "lb:enriched:{crm}:{id}"} <= set(per_person), per_person
    keys = []
    for template in per_person:
        key = re.sub(r"\{(\w+)\}", lambda m: str(LEAD_ID) if m.group(1) in PERSON_PLACEHOLDERS else "x", template)
        keys.append(key)
        redis_client.set(key, "1")
    try:
        forget_in_redis(redis_client, [LEAD_ID], [str(LEAD_ID)])
        assert [k for k in keys if redis_client.exists(k)] == [], "per-person keys that forget does not purge"
    finally:
        redis_client.delete(*keys)
