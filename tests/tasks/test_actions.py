"""Rule actions end to end: the alerts stage (in this process) queues each action of a crossed rule in the outbox, a
real `leadbridge worker` carries it out against the sandbox CRM and the sandbox's Slack through the real SDKs
(hubspot-api-client, slack_sdk): once per crossing, not again inside the cooldown, retried on 429/5xx, once when
the answer is lost after the vendor committed, a DM falling back to the channel, and a deleted owner answered
with a clear error in deliveries while the other actions and leads proceed."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import select

from core.records import utcnow
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from sandbox import DEFAULT_HUBSPOT_TOKEN, DEFAULT_SF_SESSION, SLACK_WEBHOOK_PATH, SandboxCRM
from sandbox.slack_api import SANDBOX_BOT_TOKEN
from storage.db import Database
from storage.models import AlertRule, AuditEntry, Lead, LeadCrmId, OutboxItem
from storage.scores import ScoreChange
from tasks.alerts import fire_alert_rules
from tasks.resources import Resources
from tests.connectors.conftest import salesforce_for
from tests.processes import start_cli, stop, wait_for
from tests.services import broker_urls, wipe_pipeline

OWNER = "7001"  # a sandbox HubSpot owner (sandbox.crm_actions.HUBSPOT_DEMO), e-mail ava.hart@sandbox.invalid
NURTURE_LIST = "1001"
TASK = {"kind": "crm_task", "params": {"subject": "Call this hot lead", "due_days": 1, "priority": "high"}}


@dataclass
class ActionWorld:
    """The sandbox, the database, the in-process alerts stage (its tasks go to the worker's broker) and helpers."""

    sandbox: SandboxCRM
    db: Database
    res: Resources
    celery: Any

    def contact(self, email: str, owner: str | None = OWNER) -> int:
        """A HubSpot contact in the sandbox and its lead (with the owner as last read); returns the lead id."""
        props = {"email": email, "firstname": email.split("@")[0].title(), "lastname": "Lopez"}
        if owner:
            props["hubspot_owner_id"] = owner
        contact = self.sandbox.store.hs_create("contacts", props)
        with self.db.session() as session:
            lead = Lead(email=email, first_name=props["firstname"], last_name="Lopez", grade="A", score=90,
                        reasons=["+ requested a demo"], properties={"hubspot_owner_id": owner} if owner else {})
            session.add(lead)
            session.flush()
            session.add(LeadCrmId(lead_id=lead.id, crm="hubspot", object_type="contact", object_id=contact["id"]))
            return lead.id

    def salesforce_lead(self, email: str, owner: str) -> tuple[int, str]:
        """A Salesforce Lead in the sandbox owned by `owner` and its lead; returns (lead id, Lead id)."""
        record = self.sandbox.store.sf_create("Lead", {"FirstName": "Bo", "LastName": "Ruiz", "Email": email,
                                                       "Company": "Acme", "OwnerId": owner}, source="CRM_UI")
        with self.db.session() as session:
            lead = Lead(email=email, first_name="Bo", last_name="Ruiz", grade="A", score=90,
                        reasons=["+ requested a demo"], properties={"OwnerId": owner})
            session.add(lead)
            session.flush()
            session.add(LeadCrmId(lead_id=lead.id, crm="salesforce", object_type="lead", object_id=record))
            return lead.id, record

    def sf_tasks(self, record: str) -> list[dict[str, Any]]:
        """The sandbox's Salesforce Tasks on this Lead."""
        return [t for t in self.sandbox.store.sf_records["Task"].values() if t.get("WhoId") == record]

    def rule(self, actions: list[dict[str, Any]], cooldown: int = 60, name: str = "Hot leads") -> int:
        """An enabled rule at 75 with these actions."""
        with self.db.session() as session:
            rule = AlertRule(name=name, threshold=75, channel="#sales", cooldown_minutes=cooldown, routing={},
                             enabled=True, actions=actions)
            session.add(rule)
            session.flush()
            return rule.id

    def cross(self, *lead_ids: int) -> int:
        """Each lead's score rises from 60 to 90: the alerts stage queues the crossed rules' actions."""
        return fire_alert_rules(self.res, [ScoreChange(i, 60, 90, True, False) for i in lead_ids])

    def rows(self) -> list[OutboxItem]:
        """Every rule-action row, oldest first."""
        with self.db.session() as session:
            rows = list(session.scalars(select(OutboxItem).where(OutboxItem.kind == "action").order_by(OutboxItem.id)))
            session.expunge_all()
            return rows

    def settled(self, count: int, timeout: float = 60.0) -> list[OutboxItem]:
        """Wait until `count` action rows exist and none is pending; returns them."""
        try:
            wait_for(lambda: len(rows := self.rows()) == count and all(r.status != "pending" for r in rows), timeout,
                     f"{count} actions carried out")
        except AssertionError:
            raise AssertionError(f"not settled: {[(r.status, r.attempts, r.error) for r in self.rows()]}") from None
        return self.rows()

    def tasks(self) -> list[dict[str, Any]]:
        """The sandbox's HubSpot tasks."""
        return self.sandbox.store.hs_list("tasks", None, 100)[0]

    def dms(self) -> list[dict[str, Any]]:
        """Direct messages the bot posted in the sandbox's Slack."""
        return requests.get(self.sandbox.base_url + "/_sandbox/slack/dms", timeout=5).json()["messages"]

    def channel_posts(self) -> list[dict[str, Any]]:
        """Messages the sandbox's incoming webhook accepted."""
        return self.sandbox.slack.list(SLACK_WEBHOOK_PATH)

    def requests(self, method: str, path: str) -> list[dict[str, Any]]:
        """The sandbox's logged requests with this method whose path matches `path` (a regular expression)."""
        logged = requests.get(self.sandbox.base_url + "/_sandbox/requests", params={"path": path}, timeout=5)
        return [r for r in logged.json()["requests"] if r["method"] == method]

    def fault(self, **spec: Any) -> None:
        """Inject a sandbox fault (sandbox.control.Fault)."""
        requests.post(self.sandbox.base_url + "/_sandbox/faults", json=spec, timeout=5).raise_for_status()


@pytest.fixture()
def action_world(db: Database, redis_url: str, service_env: dict[str, str], settings_overrides: dict[str, Any],
                 service_urls: ServiceUrls, hubspot_sandbox: SandboxCRM) -> Iterator[ActionWorld]:
    """A real worker (2 processes) on broker database 9 with HubSpot, Salesforce, the Slack webhook and the Slack bot
    all on the test's sandbox, and the alerts stage in this process publishing to it."""
    from tasks.celery_app import create_celery

    sandbox = hubspot_sandbox
    redis = make_redis_client(redis_url)
    wipe_pipeline(db, redis)
    broker, broker_redis = broker_urls(redis_url, 9)
    make_redis_client(broker_redis).flushdb()
    vendor = {"HUBSPOT_ACCESS_TOKEN": DEFAULT_HUBSPOT_TOKEN, "HUBSPOT_BASE_URL": sandbox.base_url,
              "SLACK_WEBHOOK_URL": sandbox.base_url + SLACK_WEBHOOK_PATH, "SLACK_BOT_TOKEN": SANDBOX_BOT_TOKEN,
              "SLACK_API_URL": sandbox.base_url + "/api/",
              # The sandbox's Salesforce org, through simple-salesforce routed to plain http (as sandbox mode does).
              "SALESFORCE_SESSION_ID": DEFAULT_SF_SESSION, "SALESFORCE_SANDBOX_URL": sandbox.base_url}
    worker = start_cli(["worker", "--concurrency", "2"],
                       {**service_env, **vendor, "CELERY_BROKER_URL": broker, "LEADBRIDGE_ALERT_CHANNEL_INTERVAL": "0"})
    settings = load_settings({**settings_overrides, "hubspot_access_token": DEFAULT_HUBSPOT_TOKEN,
                              "hubspot_base_url": sandbox.base_url, "broker_url": broker}, env_file=None)
    urls = dataclasses.replace(service_urls, broker_url=broker)
    celery = create_celery(settings, urls)
    try:
        wait_for(lambda: celery.control.ping(timeout=0.5), 60, "the worker answering")
        yield ActionWorld(sandbox, db, Resources(settings, urls, db, redis), celery)
    finally:
        stop(worker)


def _by_kind(rows: list[OutboxItem]) -> dict[str, OutboxItem]:
    return {r.payload["action"]["kind"]: r for r in rows}


@pytest.mark.slow
def test_each_action_once_per_crossing_not_again_in_the_cooldown_and_a_replay_finds_it(
        action_world: ActionWorld) -> None:
    w = action_world
    w.rule([{"kind": "slack_channel"}, {"kind": "slack_owner_dm"}, TASK,
            {"kind": "crm_owner", "params": {"owners": ["7002", "7003"]}},
            {"kind": "crm_list", "params": {"list_id": NURTURE_LIST}}])
    lead = w.contact("ana@acme.example")
    assert w.cross(lead) == 5
    rows = _by_kind(w.settled(5))
    assert {k: r.status for k, r in rows.items()} == dict.fromkeys(rows, "sent")
    assert len({r.action_key for r in rows.values()}) == 5
    assert len(w.channel_posts()) == 1
    dms = w.dms()
    assert len(dms) == 1 and dms[0]["metadata"]["event_payload"]["key"] == rows["slack_owner_dm"].action_key
    assert rows["slack_owner_dm"].payload["result"]["status"] == "done"
    tasks = w.tasks()
    assert len(tasks) == 1 and tasks[0]["properties"]["hs_task_subject"] == "Call this hot lead"
    assert tasks[0]["properties"]["hubspot_owner_id"] == OWNER
    contact_id = rows["crm_task"].object_id
    assert w.sandbox.store.hs_get("contacts", contact_id)["properties"]["hubspot_owner_id"] == "7002"  # turn 0
    assert contact_id in w.sandbox.store.hs_actions.members[NURTURE_LIST]

    # The same lead crossing again inside the cooldown queues nothing.
    assert w.cross(lead) == 0
    time.sleep(2)
    assert len(w.rows()) == 5 and len(w.tasks()) == 1 and len(w.dms()) == 1

    # A replay runs the task and the DM again with the same keys: found, not made twice.
    from services.deliveries import enqueue_actions, replay_actions

    with w.db.session() as session:
        ids = replay_actions(session, "admin@example.com", [rows["crm_task"].id, rows["slack_owner_dm"].id])
    assert enqueue_actions(w.celery, ids)
    replayed = _by_kind(w.settled(5))
    assert replayed["crm_task"].payload["result"]["status"] == "exists"
    assert replayed["slack_owner_dm"].payload["result"]["status"] == "exists"
    assert len(w.tasks()) == 1 and len(w.dms()) == 1
    with w.db.session() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "delivery.replay_action")).first()


@pytest.mark.slow
def test_round_robin_turns_are_decided_once_per_crossing(action_world: ActionWorld) -> None:
    w = action_world
    w.rule([{"kind": "crm_owner", "params": {"owners": ["7001", "7002", "7003"]}}, TASK])
    leads = [w.contact(f"p{i}@acme.example", owner=None) for i in range(4)]
    assert w.cross(*leads) == 8
    rows = [r for r in w.settled(8) if r.payload["action"]["kind"] == "crm_owner"]
    owners = [w.sandbox.store.hs_get("contacts", r.object_id)["properties"]["hubspot_owner_id"] for r in rows]
    assert owners == ["7001", "7002", "7003", "7001"]
    assert [r.payload["target"]["turn"] for r in rows] == [0, 1, 2, 3]
    # The crossing's task goes to the owner its turn picked.
    assert sorted(t["properties"]["hubspot_owner_id"] for t in w.tasks()) == sorted(owners)


@pytest.mark.slow
def test_retried_on_429_and_5xx_honouring_retry_after(action_world: ActionWorld) -> None:
    w = action_world
    w.rule([TASK])
    lead = w.contact("ana@acme.example")
    # A worker's connector tries once (WORKER_RETRY): each refusal is one retry of the task, after its Retry-After.
    w.fault(route="^/crm/v3/objects/tasks$", method="POST", status=429, retry_after=3, count=2)
    w.fault(route="^/crm/v3/objects/tasks$", method="POST", status=503, count=2)
    started = time.monotonic()
    assert w.cross(lead) == 1
    [row] = w.settled(1, timeout=120)
    assert row.status == "sent" and row.error is None
    assert row.attempts == 5  # four refusals, then the task
    assert len(w.tasks()) == 1
    assert time.monotonic() - started >= 6  # two 429s each asked for three seconds


@pytest.mark.slow
def test_a_lost_answer_after_the_commit_creates_once(action_world: ActionWorld) -> None:
    w = action_world
    w.rule([TASK, {"kind": "slack_owner_dm"}])
    lead = w.contact("ana@acme.example")
    w.fault(route="^/crm/v3/objects/tasks$", method="POST", kind="lost_response", count=1)
    w.fault(route="^/api/chat.postMessage$", kind="lost_response", count=1)
    assert w.cross(lead) == 2
    rows = _by_kind(w.settled(2, timeout=90))
    assert {r.status for r in rows.values()} == {"sent"}
    assert len(w.tasks()) == 1, "the retry after the lost answer made a second task"
    assert len(w.dms()) == 1, "the retry after the lost answer posted a second DM"
    assert rows["slack_owner_dm"].payload["result"]["status"] == "exists"


@pytest.mark.slow
def test_the_dm_falls_back_to_the_channel_saying_why(action_world: ActionWorld) -> None:
    w = action_world
    requests.post(w.sandbox.base_url + "/_sandbox/slack/api", timeout=5,
                  json={"absent": ["ava.hart@sandbox.invalid"]}).raise_for_status()
    w.rule([{"kind": "slack_owner_dm"}])
    not_in_slack, no_owner = w.contact("ana@acme.example"), w.contact("bo@acme.example", owner=None)
    assert w.cross(not_in_slack, no_owner) == 2
    rows = {r.lead_id: r for r in w.settled(2)}
    assert w.dms() == [] and len(w.channel_posts()) == 2
    first, second = rows[not_in_slack].payload["result"], rows[no_owner].payload["result"]
    assert first["status"] == "fallback" and f"owner {OWNER} is not in Slack (users_not_found)" in first["detail"]
    assert second["status"] == "fallback" and "the lead has no owner in the CRM" in second["detail"]
    with w.db.session() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "rule_action.fallback")).first()


@pytest.mark.slow
def test_a_deleted_owner_is_a_clear_failure_and_blocks_nothing_else(action_world: ActionWorld) -> None:
    w = action_world
    w.rule([{"kind": "crm_owner", "params": {"owners": ["7004"]}}, TASK, {"kind": "slack_channel"}])
    first, second = w.contact("ana@acme.example"), w.contact("bo@acme.example")
    assert w.cross(first, second) == 6
    rows = w.settled(6)
    failed = [r for r in rows if r.status == "failed"]
    assert [r.payload["action"]["kind"] for r in failed] == ["crm_owner", "crm_owner"]
    assert "archived or deleted" in (failed[0].error or "") and failed[0].error.startswith("HubSpot refused")
    assert all(r.status == "sent" for r in rows if r.payload["action"]["kind"] != "crm_owner")
    assert len(w.tasks()) == 2 and len(w.channel_posts()) == 2
    with w.db.session() as session:
        audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "rule_action.failed")).all()
        assert len(audited) == 2 and audited[0].after["kind"] == "crm_owner"


@pytest.mark.slow
def test_control_leads_of_a_pilot_trigger_nothing(action_world: ActionWorld) -> None:
    w = action_world
    w.rule([TASK])
    lead = w.contact("ana@acme.example")
    assert fire_alert_rules(w.res, [ScoreChange(lead, 60, 90, True, False, group="control", hidden=True)]) == 0
    assert w.rows() == []


def test_the_same_crossing_is_queued_once(res: Resources, db: Database) -> None:
    """The unique action key: queuing a crossing again (a re-run of the alerts stage) adds no row."""
    from tasks.actions import build_target, queue_actions

    crossed_at = utcnow()
    with db.session() as session:
        rule = AlertRule(name="Once", threshold=75, channel="#sales", cooldown_minutes=60, routing={}, enabled=True,
                         actions=[{"kind": "slack_channel"}, TASK])
        lead = Lead(email="once@acme.example", grade="A")
        session.add_all([rule, lead])
        session.flush()
        rows = [LeadCrmId(lead_id=lead.id, crm="hubspot", object_type="contact", object_id="101")]
        session.add_all(rows)
        base = build_target(lead, None, rule, 60, 90, None, None)
        first = queue_actions(res, session, rule, base, rows, crossed_at)
    with db.session() as session:
        again = queue_actions(res, session, session.get(AlertRule, rule.id), base, rows, crossed_at)
        other = queue_actions(res, session, session.get(AlertRule, rule.id), base, rows, utcnow())
    assert (len(first[0]), first[1]) == (2, 2)
    assert again == ([], 0)  # the same crossing: nothing new
    assert other[1] == 2  # a later crossing is its own
    with db.session() as session:
        keys = session.scalars(select(OutboxItem.action_key).where(OutboxItem.lead_id == lead.id)).all()
    assert len(keys) == len(set(keys)) == 4


@pytest.mark.slow
def test_a_sequence_enrolment_lands_once_through_a_lost_answer(action_world: ActionWorld) -> None:
    w = action_world
    w.rule([{"kind": "crm_sequence", "params": {"sequence_id": "5001", "user_id": "3001",
                                                "sender_email": "ava.hart@sandbox.invalid"}}])
    lead = w.contact("ana@acme.example")
    w.fault(route="^/automation/v4/sequences/enrollments$", method="POST", kind="lost_response", count=1)
    assert w.cross(lead) == 1
    [row] = w.settled(1)
    assert row.status == "sent", row.error
    assert w.sandbox.store.hs_actions.enrollments[row.object_id]["sequenceId"] == "5001"
    assert row.payload["result"]["status"] == "exists"  # the retry after the lost answer found the enrolment


def test_a_salesforce_owner_gets_the_dm(res: Resources, sandbox: SandboxCRM,
                                       settings_overrides: dict[str, Any]) -> None:
    """The owner DM for a Salesforce Lead: the owner's User.Email (simple-salesforce) -> Slack (slack_sdk); a queue
    owning the lead is nobody to message, so the channel gets it, saying why."""
    from core.actions import Action, ActionTarget
    from tasks.actions import carry_out
    from tests.connectors.conftest import salesforce_for

    bot = {"slack_bot_token": SANDBOX_BOT_TOKEN, "slack_api_url": sandbox.base_url + "/api/",
           "slack_webhook_url": sandbox.base_url + SLACK_WEBHOOK_PATH, "alert_channel_interval": 0}
    here = Resources(load_settings({**settings_overrides, **bot}, env_file=None), res.urls, res.db, res.redis)
    here._connectors["salesforce"] = salesforce_for(sandbox)  # the sandbox org, through its routing session
    owner = sandbox.store.sf_demo["users"][0]
    target = ActionTarget(lead_id=1, crm="salesforce", object_type="Lead", object_id="00Q000000000001AAA",
                          owner_id=owner, name="Ana Lopez", company="Acme", score=90, previous_score=60, grade="A")
    payload = {"rule": "Hot", "channel": "#sales"}
    done = carry_out(here, Action("slack_owner_dm"), target, "lbsfkey", payload, 1)
    assert done.status == "done" and f"DM to owner {owner}" in done.detail
    dms = requests.get(sandbox.base_url + "/_sandbox/slack/dms", timeout=5).json()["messages"]
    assert [m["metadata"]["event_payload"]["key"] for m in dms] == ["lbsfkey"]
    queue = sandbox.store.sf_demo["queue"]
    fallback = carry_out(here, Action("slack_owner_dm"), dataclasses.replace(target, owner_id=queue), "lbsfkey2",
                         payload, 1)
    assert fallback.status == "fallback" and "has no e-mail in the CRM" in fallback.detail
    assert len(sandbox.slack.list(SLACK_WEBHOOK_PATH)) == 1


@pytest.mark.slow
def test_salesforce_actions_once_per_crossing_retried_and_once_through_a_lost_answer(
        action_world: ActionWorld) -> None:
    """The same guarantees in Salesforce, through simple-salesforce: the owner rotates over active Users, the Task
    (retried after a 503) goes to the owner just set, the campaign member is made once though its answer was lost,
    the DM reaches that owner; nothing again inside the cooldown, and a replay finds the Task."""
    w = action_world
    assert salesforce_for(w.sandbox).provision_fields(create=True).ok  # the Task's action-key External ID
    demo = w.sandbox.store.sf_demo
    first_owner, *routed = demo["users"]
    w.rule([{"kind": "crm_owner", "params": {"crm": "salesforce", "owners": routed}},
            {"kind": "crm_task", "params": {"crm": "salesforce", "subject": "Call this hot lead"}},
            {"kind": "crm_list", "params": {"crm": "salesforce", "list_id": demo["campaign"]}},
            {"kind": "slack_owner_dm"}])
    w.fault(route=r"/sobjects/Task/Leadbridge_Action_Key__c/", method="PATCH", status=503, count=1)
    w.fault(route=r"/sobjects/CampaignMember/?$", method="POST", kind="lost_response", count=1)
    lead, record = w.salesforce_lead("bo@acme.example", owner=first_owner)
    assert w.cross(lead) == 4
    rows = _by_kind(w.settled(4))
    assert {k: r.status for k, r in rows.items()} == dict.fromkeys(rows, "sent")
    assert w.sandbox.store.sf_get("Lead", record)["OwnerId"] == routed[0]  # turn 0 of the active users
    [task] = w.sf_tasks(record)
    assert task["OwnerId"] == routed[0] and task["Subject"] == "Call this hot lead"
    assert task["Leadbridge_Action_Key__c"] == rows["crm_task"].action_key
    members = [m for m in w.sandbox.store.sf_records["CampaignMember"].values() if m.get("LeadId") == record]
    assert len(members) == 1
    # Both faults were met: the upsert was sent again after its 503, the member create after its lost answer.
    assert len(w.requests("PATCH", r"/sobjects/Task/Leadbridge_Action_Key__c/")) == 2
    assert len(w.requests("POST", r"/sobjects/CampaignMember/?$")) >= 2
    dms = w.dms()
    assert len(dms) == 1 and dms[0]["metadata"]["event_payload"]["key"] == rows["slack_owner_dm"].action_key

    assert w.cross(lead) == 0  # inside the cooldown
    from services.deliveries import enqueue_actions, replay_actions

    with w.db.session() as session:
        ids = replay_actions(session, "admin@example.com", [rows["crm_task"].id])
    assert enqueue_actions(w.celery, ids)
    replayed = _by_kind(w.settled(4))
    assert replayed["crm_task"].payload["result"]["status"] == "exists"
    assert len(w.sf_tasks(record)) == 1 and len(w.dms()) == 1


@pytest.mark.slow
def test_a_deleted_salesforce_queue_is_a_clear_failure_and_blocks_nothing_else(action_world: ActionWorld) -> None:
    w = action_world
    assert salesforce_for(w.sandbox).provision_fields(create=True).ok
    demo = w.sandbox.store.sf_demo
    w.sandbox.store.sf_records["Group"].pop(demo["queue"])  # an admin deletes the queue the rule names
    w.rule([{"kind": "crm_owner", "params": {"crm": "salesforce", "queue": demo["queue"]}},
            {"kind": "crm_task", "params": {"crm": "salesforce"}}])
    (first, first_sf), (second, second_sf) = (w.salesforce_lead(f"{n}@acme.example", demo["users"][0])
                                              for n in ("cy", "di"))
    assert w.cross(first, second) == 4
    rows = w.settled(4)
    failed = [r for r in rows if r.status == "failed"]
    assert [r.payload["action"]["kind"] for r in failed] == ["crm_owner", "crm_owner"]
    assert failed[0].error and failed[0].error.startswith("Salesforce refused") and demo["queue"] in failed[0].error
    assert all(r.status == "sent" for r in rows if r not in failed)
    # The tasks went to the Leads' owners as before (the owner action failed), one each.
    for record in (first_sf, second_sf):
        assert [t["OwnerId"] for t in w.sf_tasks(record)] == [demo["users"][0]]
        assert w.sandbox.store.sf_get("Lead", record)["OwnerId"] == demo["users"][0]
