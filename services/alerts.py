"""Alert rules (threshold, channel, cooldown, routing) and the "send test alert" button.

`alert_rules.routing` holds, all optional:
    segment      filters the alerts stage applies (tasks.alerts.matches_routing): grades (["A", "B"]),
                 countries, industries (exact names) and min_employees
    webhook_url  the rule's own Slack incoming-webhook URL, encrypted (storage.crypto); without it the
                 SLACK_WEBHOOK_URL setting is used. An incoming webhook posts to the channel it was made for.
A lead matches a rule when its score rises to the threshold and every filter that is set matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from services import Conflict, OperationError, clean_text, get_row
from core.records import utcnow
from core.settings import Settings
from storage.audit import record
from storage.crypto import decrypt, encrypt, mask
from storage.models import AlertRule

GRADES = ("A", "B", "C", "D", "E", "F")
MAX_COOLDOWN = 60 * 24 * 30


@dataclass(frozen=True)
class RuleInput:
    """What an admin may set on a rule (None = leave unchanged on update)."""

    name: str | None = None
    threshold: int | None = None
    channel: str | None = None
    cooldown_minutes: int | None = None
    enabled: bool | None = None
    grades: list[str] | None = None
    countries: list[str] | None = None
    industries: list[str] | None = None
    min_employees: int | None = None  # 0 removes the filter
    webhook_url: str | None = None  # "" removes the rule's own webhook


def check_webhook_url(url: str) -> str:
    """Accept https URLs (and plain http only to this machine, where the sandbox's Slack sink listens)."""
    parts = urlsplit(url.strip())
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("https", "http") or not parts.hostname or (parts.scheme == "http" and not local):
        raise OperationError("the Slack webhook URL must be an https:// URL (e.g. https://hooks.slack.com/services/...)")
    if len(url) > 500 or any(ord(ch) < 33 for ch in url.strip()):
        raise OperationError("the Slack webhook URL is not a valid URL")
    return url.strip()


def rule_view(rule: AlertRule) -> dict[str, Any]:
    """A rule as pages and the API show it (the webhook URL masked)."""
    routing = dict(rule.routing or {})
    segment = dict(routing.get("segment") or {})
    stored_url = routing.get("webhook_url")
    min_employees = segment.get("min_employees")
    return {
        "id": rule.id, "name": rule.name, "threshold": rule.threshold, "channel": rule.channel,
        "cooldown_minutes": rule.cooldown_minutes, "enabled": rule.enabled,
        "grades": [str(g) for g in segment.get("grades") or []],
        "countries": [str(c) for c in segment.get("countries") or []],
        "industries": [str(i) for i in segment.get("industries") or []],
        "min_employees": int(min_employees) if isinstance(min_employees, (int, float)) and min_employees else None,
        "webhook_url_hint": mask(decrypt(stored_url)) if stored_url else None,
        "created_at": rule.created_at,
    }


def _audit_view(rule: AlertRule) -> dict[str, Any]:
    view = rule_view(rule)
    view.pop("created_at")
    view.pop("webhook_url_hint")
    view["own_webhook"] = bool((rule.routing or {}).get("webhook_url"))
    return view


def _rule(session: Session, rule_id: int) -> AlertRule:
    return get_row(session, AlertRule, rule_id, "alert rule")


def _choices(values: list[str] | None, allowed: tuple[str, ...], what: str, upper: bool = False) -> list[str]:
    picked = []
    for value in values or []:
        item = value.strip().upper() if upper else value.strip().lower()
        if item not in allowed:
            raise OperationError(f"{what} must be among {', '.join(allowed)}, not {value!r}")
        if item not in picked:
            picked.append(item)
    return picked


def _names(values: list[str], what: str) -> list[str]:
    picked: list[str] = []
    for value in values:
        text = clean_text(value, what, max_length=100, required=False)
        if text and text not in picked:
            picked.append(text)
    return picked


def _apply(session: Session, rule: AlertRule, data: RuleInput) -> None:
    if data.name is not None:
        name = clean_text(data.name, "name", max_length=100)
        clash = session.scalars(select(AlertRule).where(AlertRule.name == name, AlertRule.id != rule.id)).first()
        if clash is not None:
            raise Conflict(f"an alert rule named {name!r} already exists")
        rule.name = name or ""
    if data.threshold is not None:
        if not 0 <= data.threshold <= 100:
            raise OperationError("the threshold is a score from 0 to 100")
        rule.threshold = int(data.threshold)
    if data.channel is not None:
        rule.channel = clean_text(data.channel, "channel", max_length=100) or ""
    if data.cooldown_minutes is not None:
        if not 0 <= data.cooldown_minutes <= MAX_COOLDOWN:
            raise OperationError(f"the cooldown is 0 to {MAX_COOLDOWN} minutes")
        rule.cooldown_minutes = int(data.cooldown_minutes)
    if data.enabled is not None:
        rule.enabled = bool(data.enabled)
    routing = dict(rule.routing or {})
    segment = dict(routing.get("segment") or {})
    if data.grades is not None:
        segment["grades"] = _choices(data.grades, GRADES, "grades", upper=True)
    if data.countries is not None:
        segment["countries"] = _names(data.countries, "country")
    if data.industries is not None:
        segment["industries"] = _names(data.industries, "industry")
    if data.min_employees is not None:
        if not 0 <= data.min_employees <= 10_000_000:
            raise OperationError("the minimum company size is 0 to 10,000,000 employees")
        segment["min_employees"] = int(data.min_employees)
    routing["segment"] = {k: v for k, v in segment.items() if v}
    if data.webhook_url is not None:
        if data.webhook_url.strip():
            routing["webhook_url"] = encrypt(check_webhook_url(data.webhook_url))
        else:
            routing.pop("webhook_url", None)
    rule.routing = {k: v for k, v in routing.items() if v}


def list_rules(session: Session) -> list[AlertRule]:
    """All rules, by id."""
    return list(session.scalars(select(AlertRule).order_by(AlertRule.id)))


def get_rule(session: Session, rule_id: int) -> AlertRule:
    """One rule, or NotFound."""
    return _rule(session, rule_id)


def create_rule(session: Session, actor: str, data: RuleInput) -> AlertRule:
    """Create a rule (name and channel are required)."""
    if not data.name or not data.channel:
        raise OperationError("a rule needs a name and a channel")
    rule = AlertRule(name="", channel="", threshold=75, cooldown_minutes=1440, routing={}, enabled=True,
                     created_at=utcnow())
    _apply(session, rule, data)
    session.add(rule)
    session.flush()
    record(session, actor=actor, action="alert_rule.create", target=f"alert_rule:{rule.id}", after=_audit_view(rule))
    return rule


def update_rule(session: Session, actor: str, rule_id: int, data: RuleInput) -> AlertRule:
    """Change some of a rule's settings."""
    rule = _rule(session, rule_id)
    before = _audit_view(rule)
    _apply(session, rule, data)
    session.flush()
    after = _audit_view(rule)
    if after != before:
        changed = sorted(k for k in after if after[k] != before.get(k))
        record(session, actor=actor, action="alert_rule.update", target=f"alert_rule:{rule.id}",
               before={k: before.get(k) for k in changed}, after={k: after[k] for k in changed})
    return rule


def delete_rule(session: Session, actor: str, rule_id: int) -> None:
    """Remove a rule."""
    rule = _rule(session, rule_id)
    record(session, actor=actor, action="alert_rule.delete", target=f"alert_rule:{rule.id}", before=_audit_view(rule))
    session.delete(rule)


def webhook_url_for(rule: AlertRule, settings: Settings) -> str | None:
    """The Slack webhook a rule posts to: its own, else SLACK_WEBHOOK_URL, else None."""
    stored = (rule.routing or {}).get("webhook_url")
    if stored:
        return decrypt(stored)
    return settings.slack_webhook_url.get_secret_value() if settings.slack_webhook_url is not None else None


@dataclass(frozen=True)
class TestAlertResult:
    """What happened when a test alert was posted."""

    rule_id: int
    sent: bool
    error: str | None = None


TestAlertResult.__test__ = False  # type: ignore[attr-defined]  # not a pytest class


def send_test_alert(session: Session, settings: Settings, actor: str, rule_id: int) -> TestAlertResult:
    """Post a clearly marked test message through the Slack connector to the rule's webhook."""
    from connectors.base import ConnectorError
    from connectors.slack import HotLeadAlert, SlackNotifier

    rule = _rule(session, rule_id)
    url = webhook_url_for(rule, settings)
    if not url:
        raise Conflict("no Slack webhook for this rule: give the rule one or set SLACK_WEBHOOK_URL",
                       code="not_configured")
    alert = HotLeadAlert(
        name="Test Lead (leadbridge test alert)", company="Example Inc.", score=max(rule.threshold, 0), grade="A",
        reasons=["This is a test message from the leadbridge admin", f"Rule {rule.name!r}: score >= {rule.threshold}",
                 f"Channel {rule.channel}, cooldown {rule.cooldown_minutes} min"],
        rule=f"{rule.name} (test)",
    )
    try:
        SlackNotifier(url, retry_attempts=1, timeout=10.0).send_hot_lead(alert)
        result = TestAlertResult(rule.id, True)
    except ConnectorError as exc:
        result = TestAlertResult(rule.id, False, exc.vendor_message or str(exc))
    record(session, actor=actor, action="alert_rule.test", target=f"alert_rule:{rule.id}",
           after={"sent": result.sent, "error": result.error})
    return result
