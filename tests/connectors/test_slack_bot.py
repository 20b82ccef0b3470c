"""Owner DMs through slack_sdk's WebClient against the sandbox's Slack Web API (real HTTP): scopes, lookup,
one message per key through a lost answer, errors mapped (missing_scope names the scope, 429 its Retry-After)."""

from __future__ import annotations

import pytest
import requests

from connectors.base import AuthConnectorError, TransientConnectorError
from connectors.slack import DM_SCOPES, SlackBot
from sandbox import SandboxCRM
from sandbox.slack_api import SANDBOX_BOT_TOKEN

PAYLOAD = {"text": "Hot lead: Ana Lopez (Acme) scored 92 (A)",
           "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Acme* crossed *Hot lead*"}}]}


def _state(sandbox: SandboxCRM, **body: object) -> None:
    requests.post(sandbox.base_url + "/_sandbox/slack/api", json=body, timeout=5).raise_for_status()


def _dms(sandbox: SandboxCRM) -> list[dict[str, object]]:
    return requests.get(sandbox.base_url + "/_sandbox/slack/dms", timeout=5).json()["messages"]


def _bot(sandbox: SandboxCRM, token: str = SANDBOX_BOT_TOKEN) -> SlackBot:
    return SlackBot(token, base_url=sandbox.base_url + "/api/")


def test_scopes_lookup_and_one_dm_per_key(sandbox: SandboxCRM) -> None:
    _state(sandbox, members={"rep@acme.example": "U0REP0001"})
    bot = _bot(sandbox)
    assert set(DM_SCOPES) <= bot.scopes()
    assert bot.user_by_email("rep@acme.example") == "U0REP0001"
    assert bot.user_by_email("nobody@acme.example") is None  # users_not_found
    # A Salesforce User's e-mail (a CRM owner) is a member of the sandbox workspace.
    assert bot.user_by_email("admin@sandbox.invalid")
    first = bot.send_dm("U0REP0001", PAYLOAD, "lbkey1")
    assert first.channel.startswith("D") and not first.existed
    again = bot.send_dm("U0REP0001", PAYLOAD, "lbkey1")
    assert again.existed and again.ts == first.ts
    bot.send_dm("U0REP0001", PAYLOAD, "lbkey2")
    assert [m["metadata"]["event_payload"]["key"] for m in _dms(sandbox)] == ["lbkey1", "lbkey2"]


def test_a_lost_answer_is_found_on_retry(sandbox: SandboxCRM) -> None:
    _state(sandbox, members={"rep@acme.example": "U0REP0001"})
    requests.post(sandbox.base_url + "/_sandbox/faults", timeout=5, json={
        "route": "^/api/chat.postMessage$", "kind": "lost_response", "count": 1}).raise_for_status()
    bot = _bot(sandbox)
    with pytest.raises(TransientConnectorError):
        bot.send_dm("U0REP0001", PAYLOAD, "lbkey-lost")
    assert len(_dms(sandbox)) == 1  # Slack posted it; we never heard
    retried = bot.send_dm("U0REP0001", PAYLOAD, "lbkey-lost")
    assert retried.existed
    assert len(_dms(sandbox)) == 1


def test_a_first_dm_needs_only_chat_write_and_the_lookup(sandbox: SandboxCRM) -> None:
    _state(sandbox, members={"rep@acme.example": "U0REP0001"},
           tokens={"xoxb-minimal": ["users:read.email", "chat:write"]})
    bot = _bot(sandbox, "xoxb-minimal")
    sent = bot.send_dm(bot.user_by_email("rep@acme.example") or "", PAYLOAD, "lbfirst", check_first=False)
    assert sent.channel.startswith("D") and len(_dms(sandbox)) == 1
    with pytest.raises(AuthConnectorError) as caught:  # a retry cannot look in the DM's history
        bot.send_dm("U0REP0001", PAYLOAD, "lbfirst")
    assert caught.value.code == "missing_scope" and "im:write" in str(caught.value.vendor_message)


def test_missing_scope_names_it_and_rate_limit_carries_retry_after(sandbox: SandboxCRM) -> None:
    _state(sandbox, members={"rep@acme.example": "U0REP0001"}, tokens={"xoxb-narrow": ["chat:write"]})
    narrow = _bot(sandbox, "xoxb-narrow")
    assert narrow.scopes() == {"chat:write"}
    with pytest.raises(AuthConnectorError) as caught:
        narrow.user_by_email("rep@acme.example")
    assert caught.value.code == "missing_scope" and "users:read.email" in str(caught.value.vendor_message)
    with pytest.raises(AuthConnectorError):
        _bot(sandbox, "xoxb-unknown").scopes()  # invalid_auth
    bot = _bot(sandbox)
    with pytest.raises(TransientConnectorError) as limited:
        for i in range(10):
            bot.send_dm("U0REP0001", PAYLOAD, f"burst{i}", check_first=False)
    assert limited.value.code == "ratelimited" and limited.value.retry_after and limited.value.retry_after >= 1


def test_doctor_names_missing_bot_scopes(sandbox: SandboxCRM) -> None:
    from cli.doctor import FAIL, OK, SKIP, WARN, check_slack_bot
    from core.settings import load_settings

    def check(token: str | None) -> tuple[str, str]:
        settings = load_settings({"slack_bot_token": token, "slack_api_url": sandbox.base_url + "/api/"},
                                 env_file=None)
        result = check_slack_bot(settings)
        return result.state, result.detail

    _state(sandbox, tokens={"xoxb-narrow": ["chat:write", "users:read"]})
    assert check(SANDBOX_BOT_TOKEN)[0] == OK
    state, detail = check("xoxb-narrow")
    assert state == WARN and "missing scope(s) users:read.email, im:write, im:history" in detail
    _state(sandbox, tokens={"xoxb-no-history": ["chat:write", "users:read.email"]})
    state, detail = check("xoxb-no-history")
    assert state == WARN and "a DM retried after a lost answer posts to the channel instead" in detail
    assert check("xoxb-revoked")[0] == FAIL
    assert check(None)[0] == SKIP
