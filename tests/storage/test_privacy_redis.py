"""Forget leaves no Redis key about the person: every per-lead key the code writes today is purged.

Two nets: a person taken through the real pipeline (ingest, enrichment from the sandbox CRM over HTTP,
scoring, alert rules, a writeback flush, repair claims) and then forgotten, after which no key name or
value in Redis mentions their lead id, e-mail or ids; and a census of the key templates in core.keys (the
one home of every key: tests/core/test_keys.py fails on a key literal anywhere else), so a per-lead key
added later fails here until storage.privacy purges it too.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from connectors.hubspot.client import HubSpotConnector
from core import keys
from core.records import utcnow
from core.runtime import ServiceUrls
from core.settings import load_settings
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from storage.db import Database
from storage.models import AlertRule, InboxEvent, Lead
from storage.privacy import find_person, forget_in_redis, forget_person
from tasks.alerts import fire_alert_rules
from tasks.ingest import enrich_new_leads, ingest_rows
from tasks.resources import Resources, claim_repairs
from tasks.score import score_and_store
from tasks.writeback import flush_once
from tests.pii import BOB, DANA, World, hubspot_event, redis_containing, segment

LEAD_ID = 7700123  # distinctive, so a search for it in Redis finds nothing by chance
CONTACT_ID = "7700456"
# Placeholders that stand for a person in a key template: a lead id, a CRM / web id or an e-mail.
PERSON_PLACEHOLDERS = {"id", "lead", "lead_id", "contact", "contact_id", "email", "ref", "user", "user_id"}
# Placeholders that name no lead: every placeholder in core.keys must be one of these or a person's.
OTHER_PLACEHOLDERS = {"crm", "stage", "bucket", "stream", "account", "rule", "channel", "digest", "address", "source", "index"}


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
    claim_repairs(client, [keys.RESCORED_KEY.format(lead=LEAD_ID), keys.REENRICHED_KEY.format(lead=LEAD_ID),
                           keys.RECONCILED_KEY.format(crm="hubspot", lead=LEAD_ID)], timedelta(seconds=60))
    client.hset(keys.INFLIGHT_KEY.format(crm="hubspot"), LEAD_ID, '{"crm_id": "x"}')  # a write under way
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


def placeholders(template: str) -> set[str]:
    """The placeholder names of a key template."""
    return set(re.findall(r"\{(\w+)\}", template))


def test_every_key_placeholder_is_classified() -> None:
    known = PERSON_PLACEHOLDERS | OTHER_PLACEHOLDERS
    unknown = {name: sorted(placeholders(t) - known) for name, t in keys.templates().items()
               if placeholders(t) - known}
    assert unknown == {}, "say whether these placeholders name a person (PERSON_PLACEHOLDERS) or not"


def test_every_per_person_key_template_is_purged(redis_client: Any) -> None:
    per_person = sorted(t for t in keys.templates().values() if placeholders(t) & PERSON_PLACEHOLDERS)
    # The census sees the keys it must: repair claims, a cooldown, the enrichment cache, the feature traits.
    assert {keys.RESCORED_KEY, keys.RECONCILED_KEY, keys.ALERT_COOLDOWN_KEY, keys.ENRICHED_KEY,
            keys.FEATURE_TRAITS_KEY, keys.FEATURE_STREAM_KEY} <= set(per_person), per_person
    made = []
    for template in per_person:
        key = re.sub(r"\{(\w+)\}", lambda m: str(LEAD_ID) if m.group(1) in PERSON_PLACEHOLDERS else "x",
                     template)
        made.append(key)
        redis_client.set(key, "1")
    try:
        forget_in_redis(redis_client, [LEAD_ID], [str(LEAD_ID)])
        assert [k for k in made if redis_client.exists(k)] == [], "per-person keys that forget does not purge"
    finally:
        redis_client.delete(*made)


def test_lead_ids_leave_the_keys_shared_with_other_leads(redis_client: Any) -> None:
    other = str(LEAD_ID + 1)
    members = {"set": redis_client.smembers, "zset": lambda k: redis_client.zrange(k, 0, -1),
               "hash": redis_client.hkeys}
    made = {}
    for template in keys.LEAD_MEMBER_KEYS:
        key = template.format(crm="hubspot", account="x")
        redis_client.delete(key)
        if template in (keys.DIRTY_KEY, keys.SCORE_ASIDE_KEY):
            redis_client.sadd(key, LEAD_ID, other)
            made[key] = "set"
        elif template == keys.ACCOUNT_ENGAGED_KEY:
            redis_client.zadd(key, {str(LEAD_ID): 1, other: 2})
            made[key] = "zset"
        else:
            redis_client.hset(key, mapping={str(LEAD_ID): "v", other: "v"})
            made[key] = "hash"
    try:
        forget_in_redis(redis_client, [LEAD_ID])
        left = {key: sorted(m.decode() for m in members[kind](key)) for key, kind in made.items()}
        assert left == {key: [other] for key in made}, "the lead leaves every shared key, the other stays"
    finally:
        redis_client.delete(*made)
