"""Slack hot-lead alerts: a Block Kit message posted through slack-sdk's WebhookClient, and owner DMs through its
WebClient with a bot token; errors mapped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.webhook import WebhookClient

from connectors.base import (
    AuthConnectorError,
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
)
from connectors.retry import call_with_retries

MAX_REASONS = 5
# SLACK.md §1.1: body text -> how to treat it. 403 invalid_token means the webhook URL itself is revoked.
_AUTH_ERRORS = {"invalid_token", "action_prohibited", "posting_to_general_channel_denied"}


@dataclass(frozen=True, slots=True)
class HotLeadAlert:
    """What a hot-lead message says."""

    name: str
    company: str | None
    score: int
    grade: str | None
    reasons: Sequence[str]
    crm_url: str | None = None
    crm_label: str = "Open in CRM"
    previous_score: int | None = None
    rule: str = "Hot lead"
    model_version: str | None = None


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's control characters in user-supplied text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_hot_lead_message(alert: HotLeadAlert) -> dict[str, Any]:
    """Return the webhook payload: fallback text plus Block Kit blocks, within Block Kit's limits."""
    name = escape_mrkdwn(alert.name or "Unknown lead")
    company = escape_mrkdwn(alert.company) if alert.company else None
    grade = alert.grade or "–"
    headline = f"{alert.rule}: {alert.name}" + (f" ({alert.company})" if alert.company else "")
    text = f"{headline} scored {alert.score} ({grade})"
    change = f" (score {alert.previous_score} -> {alert.score})" if alert.previous_score is not None else ""
    section: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _clip(f"*{company or name}* crossed the *{escape_mrkdwn(alert.rule)}* rule"
                                                 f"{change}.", 3000)},
        "fields": [
            {"type": "mrkdwn", "text": f"*Score*\n{alert.score} / 100"},
            {"type": "mrkdwn", "text": f"*Grade*\n{grade}"},
            {"type": "mrkdwn", "text": _clip(f"*Company*\n{company or '–'}", 2000)},
            {"type": "mrkdwn", "text": _clip(f"*Lead*\n{name}", 2000)},
        ],
    }
    if alert.crm_url:
        section["accessory"] = {"type": "button", "action_id": "open_crm_record",
                                "text": {"type": "plain_text", "text": _clip(alert.crm_label, 75)},
                                "url": alert.crm_url[:3000]}
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(f"{alert.rule}: {alert.name}", 150),
                                    "emoji": True}},
        section,
    ]
    reasons = [escape_mrkdwn(r) for r in list(alert.reasons)[:MAX_REASONS]]
    if reasons:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(
            "*Top reasons*\n" + "\n".join(f"• {r}" for r in reasons), 3000)}})
    if alert.model_version:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": _clip(f"model {escape_mrkdwn(alert.model_version)}", 3000)}]})
    return {"text": _clip(text, 3000), "blocks": blocks}


class SlackNotifier:
    """Posts alerts to one incoming webhook."""

    def __init__(self, webhook_url: str, *, timeout: float = 10.0, retry_attempts: int = 3,
                 sleep: Callable[[float], None] = time.sleep, client: WebhookClient | None = None) -> None:
        if not webhook_url and client is None:
            raise ValueError("a Slack incoming-webhook URL is required")
        self.client = client or WebhookClient(webhook_url, timeout=int(timeout))
        self.retry_attempts = retry_attempts
        self.sleep = sleep

    def post(self, payload: dict[str, Any]) -> None:
        """Post a prepared payload; 429/5xx are retried honouring Retry-After, others raise at once."""
        def attempt() -> None:
            try:
                resp = self.client.send_dict(payload)
            except (SlackRequestError, OSError) as exc:
                raise TransientConnectorError(f"Slack webhook failed: {type(exc).__name__}: {exc}",
                                              vendor="slack") from exc
            if resp.status_code == 200:
                return
            raise map_slack_response(resp.status_code, resp.body, resp.headers)

        call_with_retries(attempt, attempts=self.retry_attempts, max_elapsed=60.0, sleep=self.sleep)

    def send_hot_lead(self, alert: HotLeadAlert) -> None:
        """Build and post a hot-lead message."""
        self.post(build_hot_lead_message(alert))


def map_slack_response(status: int, body: str | None, headers: dict[str, Any] | None) -> ConnectorError:
    """Turn a non-200 webhook answer (status + short text body) into our error hierarchy."""
    text = (body or "").strip()[:200]
    message = f"Slack webhook answered HTTP {status}: {text or 'no body'}"
    kwargs: dict[str, Any] = {"vendor": "slack", "status": status, "code": text or None, "vendor_message": text}
    if status == 429:
        retry_after = None
        for key, value in (headers or {}).items():
            if key.lower() == "retry-after":
                value = value[0] if isinstance(value, list) else value
                try:
                    retry_after = float(value)
                except (TypeError, ValueError):
                    retry_after = None
        return TransientConnectorError(message, retry_after=retry_after if retry_after is not None else 1.0, **kwargs)
    if status >= 500:
        return TransientConnectorError(message, **kwargs)
    if status in (401, 403) and (text in _AUTH_ERRORS or status == 401):
        return AuthConnectorError(message, **kwargs)
    return PermanentConnectorError(message, **kwargs)


# --- the Web API with a bot token: direct messages to a lead's owner (rule action slack_owner_dm) -------------
# users.lookupByEmail needs users:read.email; chat.postMessage (to the user id: the app's DM with them) chat:write.
# A retry first looks for the action's key in the DM: conversations.open (the DM's channel id) needs im:write,
# conversations.history im:history.
DM_SCOPES = ("users:read.email", "chat:write", "im:write", "im:history")
DM_RETRY_SCOPES = ("im:write", "im:history")
DM_METADATA_EVENT = "leadbridge_action"
# Web API errors that mean the token cannot do this (the owner DM falls back to the channel and says why).
_WEB_AUTH_ERRORS = {"missing_scope", "not_allowed_token_type", "invalid_auth", "not_authed", "token_revoked",
                    "token_expired", "account_inactive", "no_permission", "ekm_access_denied"}
_WEB_TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A DM the bot posted (or found already posted under the same key)."""

    channel: str
    ts: str
    existed: bool = False


class SlackBot:
    """Slack's Web API through slack_sdk's WebClient with a bot token: scopes, user lookup and idempotent DMs."""

    def __init__(self, token: str, *, base_url: str = "https://slack.com/api/", timeout: float = 10.0,
                 client: WebClient | None = None) -> None:
        if not token and client is None:
            raise ValueError("a Slack bot token is required")
        # No SDK retries: its default ConnectionErrorRetryHandler re-sends a chat.postMessage whose answer was
        # lost, which posts twice. Retries go through the task, which checks the DM's history first.
        self.client = client or WebClient(token=token, base_url=base_url, timeout=int(timeout), retry_handlers=[])

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except SlackApiError as exc:
            raise map_web_api_error(exc.response) from exc
        except (SlackRequestError, SlackClientError, OSError) as exc:
            raise TransientConnectorError(f"Slack {method} failed: {type(exc).__name__}", vendor="slack") from exc

    def scopes(self) -> set[str]:
        """The token's granted scopes (auth.test's x-oauth-scopes header)."""
        resp = self._call("auth_test")
        headers = {k.lower(): v for k, v in (resp.headers or {}).items()}
        raw = headers.get("x-oauth-scopes", "")
        raw = raw[0] if isinstance(raw, list) else raw
        return {s.strip() for s in str(raw).split(",") if s.strip()}

    def user_by_email(self, email: str) -> str | None:
        """The Slack user id with this e-mail, or None when nobody in the workspace has it (users_not_found)."""
        try:
            resp = self._call("users_lookupByEmail", email=email)
        except PermanentConnectorError as exc:
            if exc.code == "users_not_found":
                return None
            raise
        return str((resp.get("user") or {}).get("id") or "") or None

    def send_dm(self, user_id: str, payload: dict[str, Any], key: str, *, check_first: bool = True) -> DirectMessage:
        """Post `payload` to the DM with `user_id`, tagged with `key`; with `check_first`, a message with the same
        key in that DM's recent history is taken as sent (a retry after a lost response does not post twice)."""
        if check_first:
            channel = str((self._call("conversations_open", users=user_id).get("channel") or {}).get("id") or "")
            history = self._call("conversations_history", channel=channel, limit=100, include_all_metadata=True)
            for message in history.get("messages") or []:
                meta = message.get("metadata") or {}
                if meta.get("event_type") == DM_METADATA_EVENT and (meta.get("event_payload") or {}).get("key") == key:
                    return DirectMessage(channel, str(message.get("ts") or ""), existed=True)
        resp = self._call("chat_postMessage", channel=user_id, text=payload.get("text") or "",
                          blocks=payload.get("blocks"),
                          metadata={"event_type": DM_METADATA_EVENT, "event_payload": {"key": key}})
        return DirectMessage(str(resp.get("channel") or ""), str(resp.get("ts") or ""))


def map_web_api_error(response: Any) -> ConnectorError:
    """A Web API failure (HTTP 200 with ok:false, or 429 ratelimited) in our error hierarchy; names needed scopes."""
    data = response.data if isinstance(getattr(response, "data", None), dict) else {}
    error = str(data.get("error") or "unknown_error")[:100]
    status = int(getattr(response, "status_code", 200) or 200)
    message = f"Slack answered {error}"
    if error == "missing_scope":
        message += f" (needs {data.get('needed') or '?'}; the token has {data.get('provided') or 'none'})"
    kwargs: dict[str, Any] = {"vendor": "slack", "status": status, "code": error, "vendor_message": message}
    if status == 429 or error in _WEB_TRANSIENT_ERRORS or status >= 500:
        headers = {k.lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
        value = headers.get("retry-after")
        value = value[0] if isinstance(value, list) else value
        try:
            retry_after = float(value) if value is not None else None
        except (TypeError, ValueError):
            retry_after = None
        return TransientConnectorError(message, retry_after=retry_after or (1.0 if status == 429 else None), **kwargs)
    if error in _WEB_AUTH_ERRORS:
        return AuthConnectorError(message, **kwargs)
    return PermanentConnectorError(message, **kwargs)
