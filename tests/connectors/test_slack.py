"""Slack notifier (slack-sdk WebhookClient) against the sandbox's incoming-webhook sink."""

from __future__ import annotations

import pytest
import requests

from connectors.base import AuthConnectorError, PermanentConnectorError, TransientConnectorError
from connectors.slack import HotLeadAlert, SlackNotifier, build_hot_lead_message
from sandbox import SLACK_WEBHOOK_PATH, SandboxCRM

from .conftest import admin

ALERT = HotLeadAlert(name="Ana <Lopez>", company="Acme & Co", score=92, grade="A",
                     reasons=["+ viewed pricing 4x in 7 days", "+ demo requested", "- free e-mail domain"],
                     crm_url="https://app.hubspot.com/contacts/62515/record/0-1/101", previous_score=75,
                     model_version="v2024.06.1")


def test_hot_lead_message_is_accepted_and_recorded(sandbox: SandboxCRM) -> None:
    notifier = SlackNotifier(sandbox.base_url + SLACK_WEBHOOK_PATH)
    notifier.send_hot_lead(ALERT)
    messages = admin(sandbox, "GET", "/slack/messages").json()["messages"]
    assert len(messages) == 1 and messages[0]["path"] == SLACK_WEBHOOK_PATH
    payload = messages[0]["payload"]
    assert payload["text"] == "Hot lead: Ana <Lopez> (Acme & Co) scored 92 (A)"
    body = str(payload["blocks"])
    assert "Ana &lt;Lopez&gt;" in body and "Acme &amp; Co" in body and "• + demo requested" in body
    assert payload["blocks"][1]["accessory"]["url"].endswith("/record/0-1/101")


def test_sink_rate_limits_per_webhook_and_notifier_waits(sandbox: SandboxCRM) -> None:
    url = sandbox.base_url + SLACK_WEBHOOK_PATH
    answers = [requests.post(url, json={"text": f"m{i}"}, timeout=5) for i in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # burst of 3
    assert answers[3].status_code == 429 and answers[3].headers["Retry-After"] == "1"
    notifier = SlackNotifier(url)
    notifier.post({"text": "after the limit"})  # 429 first, then Retry-After honoured
    calls = sandbox.requests.query(family="slack")
    assert [c["status"] for c in calls][-2:] == [429, 200]
    assert calls[-1]["t"] - calls[-2]["t_end"] >= 1.0


def test_invalid_payloads_are_permanent(sandbox: SandboxCRM) -> None:
    notifier = SlackNotifier(sandbox.base_url + SLACK_WEBHOOK_PATH)
    with pytest.raises(PermanentConnectorError) as info:
        notifier.post({"blocks": []})
    assert info.value.status == 400 and info.value.code == "no_text"
    too_long = build_hot_lead_message(ALERT)
    too_long["blocks"][0]["text"]["text"] = "x" * 151
    with pytest.raises(PermanentConnectorError) as info:
        notifier.post(too_long)
    assert info.value.code == "invalid_payload"
    raw = requests.post(sandbox.base_url + SLACK_WEBHOOK_PATH, data=b"{nope", timeout=5,
                        headers={"Content-Type": "application/json"})
    assert (raw.status_code, raw.text) == (400, "invalid_payload")


def test_documented_webhook_errors(sandbox: SandboxCRM) -> None:
    revoked = SlackNotifier(sandbox.base_url + "/services/T1/B1/invalid_token")
    with pytest.raises(AuthConnectorError):
        revoked.post({"text": "x"})
    path = "/services/T2/B2/secret"
    assert admin(sandbox, "POST", "/slack/state", json={"path": path, "error": "channel_is_archived"}).ok
    with pytest.raises(PermanentConnectorError) as info:
        SlackNotifier(sandbox.base_url + path).post({"text": "x"})
    assert (info.value.status, info.value.code) == (410, "channel_is_archived")
    assert admin(sandbox, "POST", "/slack/state", json={"path": path, "error": "nope"}).status_code == 400
    flaky = SlackNotifier(sandbox.base_url + "/services/T3/B3/rollup_error", retry_attempts=2)
    with pytest.raises(TransientConnectorError):
        flaky.post({"text": "x"})
