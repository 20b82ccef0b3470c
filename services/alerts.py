"""Alert rules (threshold, channel, cooldown, routing) and the "send test alert" button.

`alert_rules.routing` holds, all optional:
    segment      filters the alerts stage applies (tasks.alerts.matches_routing): grades (["A", "B"]),
                 countries, industries (exact names) and min_employees
    webhook_url  the rule's own Slack incoming-webhook URL, encrypted (storage.crypto); without it the
                 SLACK_WEBHOOK_URL setting is used. An incoming webhook posts to the channel it was made for.
A lead matches a rule when its score rises to the threshold and every filter that is set matches.

`alert_rules.actions` is what the rule does then (core.actions: a channel post, an owner DM, a CRM task, owner,
list or sequence), each checked here (`check_actions`) with a message naming the action and the parameter.
`dry_run` counts how many leads would have fired a rule's settings over the last days of score history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.registry import PROVIDERS
from core.actions import TASK_PRIORITIES, Action, ActionSpecError
from core.records import utcnow
from core.settings import Settings
from services import Conflict, OperationError, clean_text, get_row
from storage.audit import record
from storage.crypto import decrypt, encrypt, mask
from storage.models import Account, AlertRule, Lead, ScoreHistory

GRADES = ("A", "B", "C", "D", "E", "F")
MAX_COOLDOWN = 60 * 24 * 30
MAX_ACTIONS = 10
CHANNEL_ONLY = [{"kind": "slack_channel", "params": {}}]
DRY_RUN_DAYS = 7


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
    actions: list[Any] | None = None  # core.actions.Action.to_json() forms; [] is refused (a rule must do something)


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
        "actions": [dict(a) for a in (rule.actions if rule.actions is not None else CHANNEL_ONLY)],
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
    if data.actions is not None:
        rule.actions = check_actions(data.actions)


def _id_text(value: Any, where: str, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise OperationError(f"{where}: {name} must be an id (text or a number)")
    text = str(value).strip()
    if len(text) > 64 or any(ord(ch) < 33 for ch in text):
        raise OperationError(f"{where}: {name} is not a valid id")
    return text


def check_action(data: Any, index: int) -> dict[str, Any]:
    """One submitted action, checked and normalised; OperationError naming the action and the parameter."""
    where = f"action {index + 1}"
    try:
        action = Action.from_json(data)
    except ActionSpecError as exc:
        raise OperationError(f"{where}: {exc}") from None
    where = f"action {index + 1} ({action.kind})"
    params = dict(action.params)
    out: dict[str, Any] = {}
    if action.kind == "crm_task":
        if params.get("subject") not in (None, ""):
            out["subject"] = clean_text(params["subject"], f"{where}: subject", max_length=200)
        if params.get("due_days") is not None:
            days = params["due_days"]
            if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 365:
                raise OperationError(f"{where}: due_days must be a whole number of days from 0 to 365")
            out["due_days"] = days
        if params.get("priority") not in (None, ""):
            priority = str(params["priority"]).strip().lower()
            if priority not in TASK_PRIORITIES:
                raise OperationError(f"{where}: priority must be one of {', '.join(TASK_PRIORITIES)}")
            out["priority"] = priority
    elif action.kind == "crm_owner":
        owners, queue = params.get("owners"), params.get("queue")
        if owners not in (None, [], ""):
            if not isinstance(owners, list) or len(owners) > 50:
                raise OperationError(f"{where}: owners must be a list of up to 50 owner ids")
            out["owners"] = list(dict.fromkeys(_id_text(o, where, "owners") for o in owners))
        if queue not in (None, ""):
            out["queue"] = _id_text(queue, where, "queue")
        if not out:
            raise OperationError(f"{where}: give owners (round robin) or a queue")
        if "owners" in out and "queue" in out:
            raise OperationError(f"{where}: give owners or a queue, not both")
    elif action.kind == "crm_list":
        out["list_id"] = _id_text(params["list_id"], where, "list_id")
    elif action.kind == "crm_sequence":
        out["sequence_id"] = _id_text(params["sequence_id"], where, "sequence_id")
        out["user_id"] = _id_text(params["user_id"], where, "user_id")
        sender = clean_text(params["sender_email"], f"{where}: sender_email", max_length=320) or ""
        if "@" not in sender or " " in sender:
            raise OperationError(f"{where}: sender_email must be an e-mail address")
        out["sender_email"] = sender
    if params.get("crm") not in (None, ""):
        if params["crm"] not in PROVIDERS:
            raise OperationError(f"{where}: crm must be one of {', '.join(PROVIDERS)} (or left out: the lead's CRM)")
        out["crm"] = params["crm"]
    return Action(action.kind, out).to_json()


def check_actions(actions: Sequence[Any]) -> list[dict[str, Any]]:
    """A rule's submitted actions, each checked (at least one, at most MAX_ACTIONS)."""
    if not isinstance(actions, (list, tuple)):
        raise OperationError("actions must be a list of {kind, params} objects")
    if not actions:
        raise OperationError("a rule needs at least one action (e.g. {\"kind\": \"slack_channel\"})")
    if len(actions) > MAX_ACTIONS:
        raise OperationError(f"a rule has at most {MAX_ACTIONS} actions")
    return [check_action(data, i) for i, data in enumerate(actions)]


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


@dataclass(frozen=True)
class DryRun:
    """How many leads a rule's settings would have fired over the last `days` of score history."""

    leads: int
    crossings: int  # firings, counting a lead again once its cooldown had passed
    days: int
    since: datetime
    examples: list[int]  # a few of the lead ids, newest firing first


def dry_run(session: Session, data: RuleInput, rule_id: int | None = None, *, days: int = DRY_RUN_DAYS,
            now: datetime | None = None) -> DryRun:
    """Replay the score history of the last `days` through a rule's threshold, segment filters and cooldown.

    `data` is what the editor holds (unsaved); what it leaves unset comes from rule `rule_id` (or the defaults
    of a new rule). Segment filters use each lead's current grade, country and company, and a pilot's hidden
    control leads count as they would today (not at all).
    """
    from tasks.alerts import crossed, matches_routing

    if not 1 <= days <= 90:
        raise OperationError("the dry run looks back 1 to 90 days")
    rule = AlertRule(name="dry run", channel="dry run", threshold=75, cooldown_minutes=1440, routing={}, enabled=True)
    if rule_id is not None:
        saved = _rule(session, rule_id)
        rule.threshold, rule.cooldown_minutes, rule.routing = saved.threshold, saved.cooldown_minutes, saved.routing
    _apply(session, rule, RuleInput(threshold=data.threshold, cooldown_minutes=data.cooldown_minutes,
                                    grades=data.grades, countries=data.countries, industries=data.industries,
                                    min_employees=data.min_employees))
    now = now or utcnow()
    since = now - timedelta(days=days)
    cooldown = timedelta(minutes=rule.cooldown_minutes)
    # Each lead's score just before the window: a lead already above the threshold then did not cross at its start.
    last = _last_before(since)
    before = dict(session.execute(select(ScoreHistory.lead_id, ScoreHistory.score)
                                  .join(last, ScoreHistory.id == last.c.last_id)).all())
    fired: dict[int, datetime] = {}
    crossings = 0
    history = session.execute(select(ScoreHistory.lead_id, ScoreHistory.score, ScoreHistory.created_at)
                              .where(ScoreHistory.created_at >= since, ScoreHistory.created_at <= now)
                              .order_by(ScoreHistory.lead_id, ScoreHistory.created_at, ScoreHistory.id))
    candidates: list[tuple[int, datetime]] = []
    previous: dict[int, int | None] = {}
    for lead_id, score, at in history:
        prior = previous.get(lead_id, before.get(lead_id))
        previous[lead_id] = score
        if crossed(rule, _Change(prior, score)):
            candidates.append((lead_id, at))
    leads = _dry_run_leads(session, {lead_id for lead_id, _ in candidates})
    for lead_id, at in candidates:
        lead_and_account = leads.get(lead_id)
        if lead_and_account is None or not matches_routing(rule, *lead_and_account):
            continue
        latest = fired.get(lead_id)
        if latest is not None and at - latest < cooldown:
            continue
        fired[lead_id] = at
        crossings += 1
    examples = [lead for lead, _ in sorted(fired.items(), key=lambda item: item[1], reverse=True)[:5]]
    return DryRun(leads=len(fired), crossings=crossings, days=days, since=since, examples=examples)


@dataclass(frozen=True)
class _Change:
    previous: int | None
    current: int


def _last_before(since: datetime) -> Any:
    return (select(ScoreHistory.lead_id, func.max(ScoreHistory.id).label("last_id"))
            .where(ScoreHistory.created_at < since, ScoreHistory.created_at >= since - timedelta(days=30))
            .group_by(ScoreHistory.lead_id).subquery("last_before"))


def _dry_run_leads(session: Session, lead_ids: set[int]) -> dict[int, tuple[Lead, Account | None]]:
    """The leads (with their accounts) a dry run may count: not a pilot's hidden control leads."""
    from storage.pilots import GROUP_COLUMNS, join_groups, score_hidden

    out: dict[int, tuple[Lead, Account | None]] = {}
    ids = sorted(lead_ids)
    for start in range(0, len(ids), 500):
        query = join_groups(select(Lead, Account, *GROUP_COLUMNS).outerjoin(Account, Account.id == Lead.account_id)
                            .where(Lead.id.in_(ids[start:start + 500])))
        for lead, account, group, status in session.execute(query):
            if not score_hidden(group, status):
                out[lead.id] = (lead, account)
    return out
