"""Alerts stage: Slack messages for alert rules a score crossed, with per-lead cooldown and channel pacing."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from celery import shared_task
from sqlalchemy import select

from connectors.base import ConnectorError, TransientConnectorError
from core.keys import ALERT_CHANNEL_KEY, ALERT_COOLDOWN_KEY
from storage.leads import crm_id_map, crm_ids_of
from storage.models import Account, AlertRule, Lead
from storage.scores import ScoreChange
from tasks.resources import Resources, resources

log = logging.getLogger(__name__)


def crossed(rule: AlertRule, change: ScoreChange) -> bool:
    """True when the score rose to or past the rule's threshold in this change."""
    previous = change.previous if change.previous is not None else -1
    return previous < rule.threshold <= change.current


def matches_routing(rule: AlertRule, lead: Lead, account: Account | None) -> bool:
    """Segment filters on a rule: grades, industries, countries, minimum company size (all optional)."""
    routing = rule.routing or {}
    segment = routing.get("segment") or {}
    if segment.get("grades") and lead.grade not in segment["grades"]:
        return False
    if segment.get("industries") and (account is None or account.industry not in segment["industries"]):
        return False
    if segment.get("countries") and (lead.country or (account.country if account else None)) not in segment["countries"]:
        return False
    if segment.get("min_employees") and (account is None or (account.employees or 0) < int(segment["min_employees"])):
        return False
    return True


def fire_alert_rules(res: Resources, changes: Sequence[ScoreChange]) -> int:
    """Queue one alert per (rule, lead) crossing, unless the lead is cooling down for that rule.

    A pilot's control leads (ScoreChange.hidden) trigger nothing: their scores are held back from reps.
    """
    rising = [c for c in changes if not c.hidden and (c.previous is None or c.current > c.previous)]
    if not rising:
        return 0
    with res.db.session() as session:
        rules = session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True))).all()
        # Most score changes cross no threshold: load leads (and accounts) only for those that do.
        rising = [c for c in rising if any(crossed(rule, c) for rule in rules)]
        if not rising:
            return 0
        leads = {lead.id: lead for lead in session.scalars(select(Lead).where(Lead.id.in_([c.lead_id for c in rising])))}
        account_ids = [lead.account_id for lead in leads.values() if lead.account_id]
        accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(account_ids)))} if account_ids else {}
    queued = 0
    for change in rising:
        lead = leads.get(change.lead_id)
        if lead is None:
            continue
        for rule in rules:
            if not crossed(rule, change) or not matches_routing(rule, lead, accounts.get(lead.account_id or -1)):
                continue
            key = ALERT_COOLDOWN_KEY.format(rule=rule.id, lead=lead.id)
            if not res.redis.set(key, "1", nx=True, ex=max(1, rule.cooldown_minutes * 60)):
                continue  # alerted recently for this rule
            send_alert.delay(lead.id, rule.id, change.previous, change.current)
            queued += 1
    return queued


# KEYS[1] the channel's next free slot (seconds, Redis clock); ARGV[1] the interval. Returns the wait for ours.
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', math.ceil((slot + interval - now) * 1000) + 1000)
return tostring(slot - now)
"""
MAX_ALERT_DELAY = 600.0  # seconds: an alert that would wait longer for its channel is dropped (and logged)


def reserve_channel_slot(client: Any, channel: str, interval: float) -> float:
    """Seconds until this message may go to `channel` (0 now), keeping `interval` between the channel's messages.

    Each message reserves its own slot once. Pacing by retrying until the channel was free re-ran every
    waiting alert every second (found by bench/e2e: hot leads at 500 events/s made alert retries a third
    of the workers' time).
    """
    return float(client.eval(_RESERVE_LUA, 1, ALERT_CHANNEL_KEY.format(channel=channel), interval))


@shared_task(name="tasks.alerts.send_alert", bind=True, max_retries=8, acks_late=True, ignore_result=True)
def send_alert(self: Any, lead_id: int, rule_id: int, previous: int | None, current: int,
               slot_reserved: bool = False) -> bool:
    """Post one hot-lead message (paced per channel; retried on Slack 429/5xx; never blocks scoring)."""
    res = resources()
    with res.db.session() as session:
        lead = session.get(Lead, lead_id)
        rule = session.get(AlertRule, rule_id)
        if lead is None or rule is None or not rule.enabled:
            return False
        notifier = _notifier_for(res, rule)
        if notifier is None:
            return False
        account = session.get(Account, lead.account_id) if lead.account_id else None
        crm_ids = crm_id_map(crm_ids_of(session, [lead.id]).get(lead.id, []))
        alert = build_alert(res, lead, account, rule, previous, current, crm_ids)
    interval = res.settings.alert_channel_interval
    if interval and not slot_reserved:
        wait = reserve_channel_slot(res.redis, rule.channel, interval)
        if wait > MAX_ALERT_DELAY:
            log.warning("alert.dropped", extra={"rule": rule_id, "reason": "channel backlog", "wait_s": round(wait)})
            return False
        if wait > 0.001:
            send_alert.apply_async(args=[lead_id, rule_id, previous, current], kwargs={"slot_reserved": True},
                                   countdown=wait)
            return False
    try:
        notifier.send_hot_lead(alert)
    except TransientConnectorError as exc:
        raise self.retry(countdown=max(1.0, exc.retry_after or 2.0)) from None
    except ConnectorError:
        log.exception("alert.failed", extra={"rule": rule_id})
        return False
    return True


def _notifier_for(res: Resources, rule: AlertRule) -> Any:
    """The rule's own Slack webhook (stored encrypted) when it has one, else the global one."""
    stored = (rule.routing or {}).get("webhook_url")
    if not stored:
        return res.slack()
    from connectors.slack import SlackNotifier
    from storage.crypto import decrypt

    return SlackNotifier(decrypt(stored), retry_attempts=1)


def build_alert(res: Resources, lead: Lead, account: Account | None, rule: AlertRule, previous: int | None,
                current: int, crm_ids: Mapping[str, str]) -> Any:
    """The Block Kit alert content for a lead (name, company, score, grade, top reasons, CRM link)."""
    from connectors.slack import HotLeadAlert

    name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email or f"lead {lead.id}"
    url = None
    if crm_ids.get("hubspot"):
        base = res.settings.hubspot_base_url.replace("api.hubapi.com", "app.hubspot.com")
        url = f"{base}/contacts/{crm_ids['hubspot']}"
    elif crm_ids.get("salesforce") and res.settings.salesforce_instance_url:
        url = f"{res.settings.salesforce_instance_url}/{crm_ids['salesforce']}"
    return HotLeadAlert(name=name, company=account.name if account else None, score=current, grade=lead.grade,
                        reasons=list(lead.reasons or [])[:3], crm_url=url, previous_score=previous, rule=rule.name,
                        model_version=lead.model_version)
