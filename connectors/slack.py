"""Slack hot-lead alerts: a Block Kit message posted through slack-sdk's WebhookClient, errors mapped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackRequestError
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
