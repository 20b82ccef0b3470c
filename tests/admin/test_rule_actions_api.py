"""Rule actions through the JSON API: stored and shown, every bad action answered 400 naming the action and the
parameter, changes audited; the dry run counts the leads whose score history would have fired a rule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from core.records import utcnow
from storage.db import Database
from storage.models import Account, AuditEntry, Lead, OutboxItem, ScoreHistory
from tests.admin.test_api import api  # noqa: F401 - the admin-token client fixture

TASK = {"kind": "crm_task", "params": {"subject": "Call now", "due_days": 1, "priority": "high"}}


def test_actions_are_stored_validated_and_audited(api: Any, clean_db: Database) -> None:  # noqa: F811
    created = api("POST", "/alert-rules", json={"name": "Hot", "channel": "#sales", "actions": [
        {"kind": "slack_channel"}, {"kind": "slack_owner_dm"}, TASK,
        {"kind": "crm_owner", "params": {"owners": ["77", "78", "77"]}}]})
    assert created.status_code == 201, created.json
    rule = created.json
    assert [a["kind"] for a in rule["actions"]] == ["slack_channel", "slack_owner_dm", "crm_task", "crm_owner"]
    assert rule["actions"][3]["params"] == {"owners": ["77", "78"]}  # duplicates dropped, round robin order kept
    # A rule made without actions posts to its channel, as rules always did.
    plain = api("POST", "/alert-rules", json={"name": "Plain", "channel": "#sales"}).json
    assert plain["actions"] == [{"kind": "slack_channel", "params": {}}]

    bad = {
        "unknown kind": ({"kind": "fax"}, "action 1: action kind must be one of"),
        "missing list": ({"kind": "crm_list", "params": {}}, "action 1: crm_list: list_id required"),
        "unknown param": ({"kind": "crm_task", "params": {"colour": "red"}}, "unknown parameter(s) colour"),
        "bad priority": ({"kind": "crm_task", "params": {"priority": "urgent"}}, "(crm_task): priority must be"),
        "bad due": ({"kind": "crm_task", "params": {"due_days": 400}}, "(crm_task): due_days"),
        "owner and queue": ({"kind": "crm_owner", "params": {"owners": ["1"], "queue": "00G1"}}, "not both"),
        "no owner": ({"kind": "crm_owner", "params": {}}, "give owners (round robin) or a queue"),
        "unknown crm": ({"kind": "crm_task", "params": {"crm": "pipedrive"}}, "(crm_task): crm must be one of hubspot"),
        "crm on a sequence": ({"kind": "crm_sequence", "params": {"crm": "hubspot", "sequence_id": "1", "user_id": "2",
                                                                  "sender_email": "a@b.io"}}, "unknown parameter(s) crm"),
        "sender": ({"kind": "crm_sequence", "params": {"sequence_id": "1", "user_id": "2", "sender_email": "x"}},
                   "sender_email must be an e-mail address"),
    }
    for label, (action, message) in bad.items():
        answer = api("PATCH", f"/alert-rules/{rule['id']}", json={"actions": [{"kind": "slack_channel"}, action]})
        assert answer.status_code == 400, label
        expected = message.replace("action 1", "action 2")
        assert expected in answer.json["message"], (label, answer.json)
    assert api("PATCH", f"/alert-rules/{rule['id']}", json={"actions": []}).status_code == 400

    pinned = {"kind": "crm_owner", "params": {"crm": "salesforce", "queue": "00G000000000001"}}
    kept = api("PATCH", f"/alert-rules/{rule['id']}", json={"actions": [pinned]})
    assert kept.status_code == 200 and kept.json["actions"] == [pinned]

    changed = api("PATCH", f"/alert-rules/{rule['id']}", json={"actions": [TASK]})
    assert changed.status_code == 200 and changed.json["actions"] == [TASK]
    with clean_db.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "alert_rule.update")
                                .order_by(AuditEntry.id.desc())).first()
        assert entry is not None and entry.after["actions"] == [TASK] and entry.before["actions"] == [pinned]


def _history(session: Any, lead: Lead, scores: list[tuple[int, int]]) -> None:
    now = utcnow()
    for minutes_ago, score in scores:
        at = now - timedelta(minutes=minutes_ago)
        session.add(ScoreHistory(lead_id=lead.id, score=score, probability=score / 100, grade=lead.grade, reasons=[],
                                 model_version="v1", trigger="event", feature_time=at, created_at=at))


def test_dry_run_counts_crossings_with_segment_and_cooldown(api: Any, clean_db: Database) -> None:  # noqa: F811
    day = 24 * 60
    with clean_db.session() as session:
        big = Account(name="Big Co", domain="big.example", employees=500)
        session.add(big)
        session.flush()
        leads = {name: Lead(email=f"{name}@big.example", grade=grade, account_id=big.id)
                 for name, grade in (("once", "A"), ("twice", "A"), ("cooling", "B"), ("low", "A"), ("old", "A"),
                                     ("above", "C"))}
        session.add_all(leads.values())
        session.flush()
        _history(session, leads["once"], [(3 * day, 40), (2 * day, 80)])
        _history(session, leads["twice"], [(5 * day, 50), (5 * day - 1, 90), (4 * day, 40), (1 * day, 85)])
        _history(session, leads["cooling"], [(60, 50), (50, 90), (40, 50), (30, 90)])  # inside a day's cooldown
        _history(session, leads["low"], [(2 * day, 30), (day, 60)])
        _history(session, leads["old"], [(9 * day, 30), (8 * day, 90)])  # before the window
        _history(session, leads["above"], [(8 * day, 90), (day, 95)])  # already above when the window opened
        ids = {name: lead.id for name, lead in leads.items()}

    def run(**body: Any) -> dict[str, Any]:
        answer = api("POST", "/alert-rules/dry-run", json=body)
        assert answer.status_code == 200, answer.json
        return answer.json

    everything = run(threshold=75, cooldown_minutes=day)
    assert (everything["leads"], everything["crossings"]) == (3, 4)  # twice fired twice, 3 days apart
    assert set(everything["examples"]) == {ids["once"], ids["twice"], ids["cooling"]}
    no_cooldown = run(threshold=75, cooldown_minutes=0)
    assert no_cooldown["crossings"] == 5  # cooling's second crossing counts once the cooldown is gone
    assert run(threshold=75, cooldown_minutes=day, grades=["A"])["leads"] == 2
    assert run(threshold=55, cooldown_minutes=day)["leads"] == 4
    assert run(threshold=75, cooldown_minutes=day, min_employees=1000)["leads"] == 0
    # Ten days back, old's crossing counts, and so does above's first score (a first score at 90 is a crossing).
    assert run(threshold=75, cooldown_minutes=day, days=10)["leads"] == 5

    saved = api("POST", "/alert-rules", json={"name": "Hot", "channel": "#s", "threshold": 75, "grades": ["B"]}).json
    assert api("POST", "/alert-rules/dry-run", json={"rule_id": saved["id"]}).json["leads"] == 1  # its grade filter
    assert api("POST", "/alert-rules/dry-run", json={"threshold": 101}).status_code == 400
    assert api("POST", "/alert-rules/dry-run", json={"rule_id": 999999}).status_code == 404


def test_action_deliveries_show_why_and_replay_with_the_same_key(api: Any, admin_client: Any,  # noqa: F811
                                                                 broker: tuple[str, str], clean_db: Database) -> None:
    from tests.admin.conftest import csrf_of
    from tests.admin.test_api import queued

    now = utcnow()
    with clean_db.session() as session:
        lead = Lead(email="ana@acme.example", grade="A")
        session.add(lead)
        session.flush()
        failed = OutboxItem(
            target="hubspot", kind="action", object_type="contact", object_id="101", lead_id=lead.id, status="failed",
            attempts=1, action_key="lbfailedkey", error="HubSpot refused (HTTP 404): owner 7004 is archived",
            payload={"action": {"kind": "crm_owner", "params": {"owners": ["7004"]}}, "key": "lbfailedkey",
                     "rule": "Hot", "rule_id": 1, "target": {}}, created_at=now, updated_at=now)
        sent = OutboxItem(
            target="slack", kind="action", lead_id=lead.id, status="sent", attempts=2, action_key="lbsentkey",
            payload={"action": {"kind": "slack_owner_dm", "params": {}}, "key": "lbsentkey", "rule": "Hot",
                     "rule_id": 1, "target": {}, "waits": 1, "last_wait": "waiting: Slack refused (HTTP 429): x",
                     "result": {"status": "fallback", "detail": "posted to #sales instead: owner 7001 is not in "
                                                                 "Slack (users_not_found)", "vendor_id": None}},
            created_at=now, updated_at=now, sent_at=now)
        pending = OutboxItem(target="hubspot", kind="action", lead_id=lead.id, status="pending", action_key="lbbusy",
                             payload={"action": {"kind": "crm_task", "params": {}}}, created_at=now, updated_at=now)
        session.add_all([failed, sent, pending])
        session.flush()
        failed_id, sent_id, pending_id = failed.id, sent.id, pending.id

    items = {i["id"]: i for i in api("GET", "/deliveries/outbox").json["items"]}
    assert items[sent_id]["action_key"] == "lbsentkey"
    assert items[sent_id]["action"]["result"]["status"] == "fallback"
    assert items[sent_id]["action"]["last_wait"].startswith("waiting: Slack refused (HTTP 429)")
    assert items[failed_id]["error"].startswith("HubSpot refused (HTTP 404)")
    page = admin_client.get("/admin/deliveries?tab=outbox").get_data(as_text=True)
    assert "slack_owner_dm · rule Hot · fallback: posted to #sales instead" in page
    assert "waited 1x, last: waiting: Slack refused (HTTP 429)" in page

    busy = api("POST", "/deliveries/actions/replay", json={"ids": [pending_id]})
    assert busy.status_code == 409 and "still pending" in busy.json["message"]
    replay = api("POST", "/deliveries/actions/replay", json={"ids": [failed_id, sent_id]})
    assert replay.status_code == 202 and replay.json == {"replayed": [failed_id, sent_id], "queued": True}
    assert sorted(queued(broker, "alerts"), key=lambda m: m["args"]) == [
        {"task": "tasks.actions.run_action", "kwargs": {}, "args": [failed_id]},
        {"task": "tasks.actions.run_action", "kwargs": {}, "args": [sent_id]}]
    with clean_db.session() as session:
        row = session.get(OutboxItem, failed_id)
        assert (row.status, row.error, row.action_key) == ("pending", None, "lbfailedkey")  # the same key
        assert row.payload["replayed_by"]
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "delivery.replay_action")).first()
        row.status = "failed"

    # The Deliveries page replays a chosen action row the same way.
    html = admin_client.get("/admin/deliveries?tab=outbox").get_data(as_text=True)
    answer = admin_client.post("/admin/deliveries/replay-outbox", data={"ids": [str(failed_id)],
                                                                         "csrf_token": csrf_of(html)})
    assert answer.status_code == 302
    with clean_db.session() as session:
        assert session.get(OutboxItem, failed_id).status == "pending"
