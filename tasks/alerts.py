"""Alerts stage: Slack messages for alert rules a score crossed, with per-lead cooldown and channel pacing."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from celery import shared_task
from sqlalchemy import select

from connectors.base import ConnectorError, TransientConnectorError
from core.keys import ALERT_COOLDOWN_KEY
from core.records import utcnow
from storage.leads import crm_id_map, crm_ids_of
from storage.models import Account, AlertRule, Lead
from storage.pilots import owners_of
from storage.scores import ScoreChange
from tasks.actions import (  # noqa: F401 - channel pacing and the notifier live with the actions that use them
    MAX_ALERT_DELAY,
    build_target,
    enqueue_actions,
    notifier_for,
    queue_actions,
    reserve_channel_slot,
)
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
    """Queue each action of a rule a lead crossed (one outbox row each, tasks.actions), unless the lead is cooling
    down for that rule; returns the actions queued.

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
    crossed_at = utcnow()
    queued: list[int] = []
    made = 0
    with res.db.session(write=True) as session:
        crm_rows = crm_ids_of(session, [c.lead_id for c in rising])
        owners = owners_of(session, [c.lead_id for c in rising])
        for change in rising:
            lead = leads.get(change.lead_id)
            if lead is None:
                continue
            for rule in rules:
                account = accounts.get(lead.account_id or -1)
                if not crossed(rule, change) or not matches_routing(rule, lead, account):
                    continue
                key = ALERT_COOLDOWN_KEY.format(rule=rule.id, lead=lead.id)
                if not res.redis.set(key, "1", nx=True, ex=max(1, rule.cooldown_minutes * 60)):
                    continue  # alerted recently for this rule
                rows = crm_rows.get(lead.id, [])
                base = build_target(lead, account, rule, change.previous, change.current,
                                    owners.get(lead.id), crm_url(res, crm_id_map(rows)))
                ready, count = queue_actions(res, session, rule, base, rows, crossed_at)
                queued.extend(ready)
                made += count
    enqueue_actions(queued)
    return made


@shared_task(name="tasks.alerts.send_alert", bind=True, max_retries=8, acks_late=True, ignore_result=True)
def send_alert(self: Any, lead_id: int, rule_id: int, previous: int | None, current: int,
               slot_reserved: bool = False) -> bool:
    """Post one hot-lead message (paced per channel; retried on Slack 429/5xx; never blocks scoring).

    Kept for messages queued before rule actions (0010): the alerts stage now queues tasks.actions.run_action.
    """
    res = resources()
    with res.db.session() as session:
        lead = session.get(Lead, lead_id)
        rule = session.get(AlertRule, rule_id)
        if lead is None or rule is None or not rule.enabled:
            return False
        notifier = notifier_for(res, rule)
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


def build_alert(res: Resources, lead: Lead, account: Account | None, rule: AlertRule, previous: int | None,
                current: int, crm_ids: Mapping[str, str]) -> Any:
    """The Block Kit alert content for a lead (name, company, score, grade, top reasons, CRM link)."""
    from connectors.slack import HotLeadAlert

    name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email or f"lead {lead.id}"
    return HotLeadAlert(name=name, company=account.name if account else None, score=current, grade=lead.grade,
                        reasons=list(lead.reasons or [])[:3], crm_url=crm_url(res, crm_ids), previous_score=previous,
                        rule=rule.name, model_version=lead.model_version)


def crm_url(res: Resources, crm_ids: Mapping[str, str]) -> str | None:
    """A link to the lead's record in its CRM (HubSpot first), or None."""
    if crm_ids.get("hubspot"):
        base = res.settings.hubspot_base_url.replace("api.hubapi.com", "app.hubspot.com")
        return f"{base}/contacts/{crm_ids['hubspot']}"
    if crm_ids.get("salesforce") and res.settings.salesforce_instance_url:
        return f"{res.settings.salesforce_instance_url}/{crm_ids['salesforce']}"
    return None
