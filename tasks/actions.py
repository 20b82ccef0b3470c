"""Rule actions: each action of a crossed rule is one outbox row (kind "action", its idempotency key unique) and one
`run_action` task that carries it out through Slack or the lead's CRM, retried until it lands or is refused.

Why an outbox row: the row is the delivery an admin sees (waiting, done, failed and why) and replays; its
`action_key` (core.actions.action_key) travels to the vendor, so a retry after a lost answer or a replay finds
the task, message or enrolment the first attempt made instead of making a second one.

What is retried: a Transient error (429, 5xx, a dropped connection) after its Retry-After or a backoff; an Auth
error too (a missing scope or seat is something an admin fixes while the action waits, the drill in
tests/tasks/test_actions_drill.py), for a bounded time. A Permanent error (a deleted owner, queue or list) fails the
row with the vendor's message at once and blocks nothing else.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.base import (
    AuthConnectorError,
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
)
from connectors.registry import PROVIDERS, provider, vendor_label
from core.actions import Action, ActionResult, ActionSpecError, ActionTarget, action_key
from core.keys import ACTION_TURN_KEY, ALERT_CHANNEL_KEY
from core.records import utcnow
from storage.audit import record
from storage.leads import crm_id_map
from storage.models import Account, AlertRule, Lead, LeadCrmId, OutboxItem
from tasks.resources import Resources, resources

log = logging.getLogger(__name__)

CHANNEL_ONLY = [{"kind": "slack_channel", "params": {}}]
MAX_ATTEMPTS = 14  # with BACKOFF_CAP, about five minutes of waiting before a still-refused action fails
BACKOFF_CAP = 30.0  # seconds between tries at most (a Retry-After above it is honoured)
CRMS = tuple(PROVIDERS)
# Actions addressed to the lead's owner: after a crm_owner action of the same crossing they wait for it, then go to
# the owner it set (run side by side, a task could be made for the owner the lead had before).
OWNER_ADDRESSED = ("crm_task", "slack_owner_dm")
ACTOR = "leadbridge"


def rule_actions(rule: AlertRule) -> list[tuple[int, Action]]:
    """The rule's actions with their places in it (a rule from before 0010 posts to its channel); a stored action
    that no longer parses is skipped and logged, so one bad action does not silence the others (nor move their
    places, which their idempotency keys name)."""
    out = []
    stored = rule.actions if rule.actions is not None else CHANNEL_ONLY
    for index, data in enumerate(stored):
        try:
            out.append((index, Action.from_json(data)))
        except ActionSpecError as exc:
            log.warning("action.invalid", extra={"rule": rule.id, "index": index, "problem": str(exc)})
    return out


def action_crm(action: Action, crms: Mapping[str, str]) -> str | None:
    """Where an action runs: slack, the CRM it names (its `crm` parameter, or the CRM of a one-CRM kind), else the
    CRM the lead is in (HubSpot first when both), or None (no record there)."""
    if action.channel == "slack":
        return "slack"
    if action.crm:
        return action.crm if action.crm in crms else None
    return next((crm for crm in CRMS if crm in crms), None)


def build_target(lead: Lead, account: Account | None, rule: AlertRule, previous: int | None, current: int,
                 owner: str | None, crm_url: str | None) -> ActionTarget:
    """The lead as actions need it (the CRM record they act on is filled in per action by `queue_actions`)."""
    name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email or f"lead {lead.id}"
    return ActionTarget(lead_id=lead.id, crm=None, object_type=None, object_id=None, owner_id=owner, name=name,
                        company=account.name if account else None, score=current, previous_score=previous,
                        grade=lead.grade, reasons=[str(r) for r in (lead.reasons or [])[:3]], crm_url=crm_url,
                        rule=rule.name)


def queue_actions(res: Resources, session: Session, rule: AlertRule, base: ActionTarget, rows: Sequence[LeadCrmId],
                  crossed_at: datetime) -> tuple[list[int], int]:
    """One outbox row per action of the rule for this crossing (not again for the same key); returns the ids of the
    new rows to run now (those waiting for the crossing's owner action run when it is done) and how many it made.

    A CRM action for a lead with no record in that CRM is recorded as skipped, saying so.
    """
    crms = crm_id_map(rows)
    types = {(row.crm, row.object_id): row.object_type for row in rows}
    ids = []
    made = 0
    owner_rows: dict[str, OutboxItem] = {}  # CRM -> the crossing's owner action there, which its task and DM wait for
    for index, action in rule_actions(rule):
        key = action_key(rule.id, base.lead_id, crossed_at, index, action.kind)
        where = action_crm(action, crms)
        target = base
        if where in CRMS:
            target = dataclasses.replace(base, crm=where, object_id=crms[where],
                                         object_type=types.get((where, crms[where])))
        elif crms:
            first = next(crm for crm in CRMS if crm in crms)
            target = dataclasses.replace(base, crm=first, object_id=crms[first],
                                         object_type=types.get((first, crms[first])))
        if len(crms) > 1 and action.channel != "slack":
            # The stored owner is whichever CRM last named one: in another CRM it names nobody, so a CRM action of a
            # lead in several reads its own record's owner (or waits for this crossing's owner action there).
            target = dataclasses.replace(target, owner_id=None)
        if action.kind == "crm_owner" and where in CRMS:
            # The turn is decided once, here, and kept in the payload: a retry picks the same owner.
            turn = int(res.redis.incr(ACTION_TURN_KEY.format(rule=rule.id, index=index))) - 1
            target = dataclasses.replace(target, turn=turn)
        owner_row = owner_rows.get(target.crm or "") if action.kind in OWNER_ADDRESSED else None
        waits = owner_row is not None and bool(where)
        row = OutboxItem(target=where or "crm", kind="action", object_type=target.object_type,
                         object_id=target.object_id, lead_id=base.lead_id, action_key=key,
                         status="pending" if where else "skipped",
                         error=(f"waiting for the owner action (delivery {owner_row.id})" if waits and owner_row
                                else None if where else f"{action.kind}: the lead has no record in "
                                                        f"{vendor_label(action.crm) if action.crm else 'a CRM'}"),
                         payload={"action": action.to_json(), "target": dataclasses.asdict(target), "key": key,
                                  "rule_id": rule.id, "rule": rule.name, "channel": rule.channel,
                                  "crossed_at": crossed_at.isoformat(),
                                  **({"after": owner_row.id} if waits and owner_row else {})})
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue  # this crossing's action is queued already
        made += 1 if where else 0
        if waits and owner_row is not None:
            owner_row.payload = {**owner_row.payload, "then": [*owner_row.payload.get("then", []), row.id]}
        elif where:
            ids.append(row.id)
        if action.kind == "crm_owner" and where in CRMS and where not in owner_rows:
            owner_rows[where] = row
    return ids, made


def release_after_owner(session: Session, row: OutboxItem, result: ActionResult | None) -> list[int]:
    """The crossing's task and DM that waited for its owner action: addressed to the owner it set (when it did),
    and returned to be queued. Each is released once (a replay of the owner action does not run them again)."""
    chosen = result.vendor_id if result is not None and result.status in ("done", "exists") else None
    released = []
    for waiting in session.scalars(select(OutboxItem).where(OutboxItem.id.in_((row.payload or {}).get("then") or []),
                                                            OutboxItem.status == "pending")):
        payload = dict(waiting.payload or {})
        if payload.get("released"):
            continue
        if chosen:
            payload["target"] = {**payload["target"], "owner_id": chosen}
        waiting.payload = {**payload, "released": True}
        waiting.error = None
        released.append(waiting.id)
    return released


def enqueue_actions(ids: Sequence[int]) -> None:
    """Hand queued action rows to the workers (after their commit; the sweeper is not needed: rows are durable)."""
    for outbox_id in ids:
        run_action.delay(outbox_id)


def _backoff(exc: ConnectorError, retries: int, action: Action, target: ActionTarget) -> float:
    wait = min(BACKOFF_CAP, 2.0 * 2 ** retries) * random.uniform(0.8, 1.2)
    if isinstance(exc, TransientConnectorError) and exc.retry_after:
        wait = max(wait, float(exc.retry_after))
    maybe_committed = exc.status is None or exc.status >= 500  # a 429 or 403 was refused before anything was done
    if maybe_committed and target.crm in PROVIDERS:
        # The CRM may need a moment before the retry can find what the first attempt made (connectors.<crm>.actions).
        wait = max(wait, provider(target.crm).actions.RETRY_WAIT_AFTER_UNCERTAIN.get(action.kind, 0.0))
    return round(wait, 1)


@shared_task(name="tasks.actions.run_action", bind=True, max_retries=MAX_ATTEMPTS, acks_late=True,
             ignore_result=True)
def run_action(self: Any, outbox_id: int, slot_reserved: bool = False) -> str:
    """Carry out one queued rule action (retried on 429/5xx and refusals an admin can fix; idempotent by its key)."""
    res = resources()
    with res.db.session(write=True) as session:
        row = session.get(OutboxItem, outbox_id)
        if row is None or row.kind != "action" or row.status != "pending":
            return "gone"
        if (row.payload or {}).get("after") and not (row.payload or {}).get("released"):
            return "waiting"  # its owner action releases it when done
        row.attempts += 1
        attempts = row.attempts
        payload = dict(row.payload or {})
    action = Action.from_json(payload["action"])
    target = ActionTarget(**payload["target"])
    try:
        result = carry_out(res, action, target, str(payload["key"]), payload, attempts, pace=not slot_reserved)
    except _Later as later:
        run_action.apply_async(args=[outbox_id], kwargs={"slot_reserved": True}, countdown=later.wait)
        return "paced"
    except (TransientConnectorError, AuthConnectorError) as exc:
        if self.request.retries >= MAX_ATTEMPTS:
            _finish(res, outbox_id, "failed", None, _said(exc) + f" (gave up after {attempts} tries)")
            return "failed"
        wait = _backoff(exc, self.request.retries, action, target)
        _waiting(res, outbox_id, f"waiting: {_said(exc)}; try {attempts + 1} in {wait:.0f} s")
        raise self.retry(countdown=wait) from None
    except ConnectorError as exc:
        _finish(res, outbox_id, "failed", None, _said(exc))
        return "failed"
    except Exception as exc:  # a fault of ours: the row says so rather than staying pending forever
        log.exception("action.crashed", extra={"outbox": outbox_id, "kind": action.kind})
        _finish(res, outbox_id, "failed", None, f"leadbridge could not carry it out ({type(exc).__name__}); see the "
                                                "worker log")
        return "failed"
    _finish(res, outbox_id, "sent", result, None)
    return result.status


class _Later(Exception):
    """The Slack channel's next free slot is later: run again then."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"paced {wait:.1f}s")
        self.wait = wait


def _said(exc: ConnectorError) -> str:
    vendor = vendor_label(exc.vendor)
    status = f" (HTTP {exc.status})" if exc.status and exc.status != 200 else ""
    # A connector's own message that wraps the vendor's ("crm_owner: ... refused queue 00G...: invalid cross
    # reference id") names what was refused; the vendor's text alone may not.
    text = str(exc) if exc.vendor_message and exc.vendor_message in str(exc) else str(exc.vendor_message or exc)
    return f"{vendor} refused{status}: {text[:300]}"


def _waiting(res: Resources, outbox_id: int, why: str) -> None:
    with res.db.session(write=True) as session:
        row = session.get(OutboxItem, outbox_id)
        if row is not None and row.status == "pending":
            row.error = why[:1000]
            row.updated_at = utcnow()
            # Kept after it lands, so deliveries still say why it waited.
            payload = dict(row.payload or {})
            row.payload = {**payload, "waits": int(payload.get("waits") or 0) + 1, "last_wait": why[:500]}


def _finish(res: Resources, outbox_id: int, status: str, result: ActionResult | None, error: str | None) -> None:
    """Record the action's outcome on its row; a failure (and a fallback) also in the audit log."""
    with res.db.session(write=True) as session:
        row = session.get(OutboxItem, outbox_id)
        if row is None:
            return
        row.status = status
        row.error = error[:1000] if error else None
        payload = dict(row.payload or {})
        if result is not None:
            payload["result"] = {"status": result.status, "detail": result.detail[:500], "vendor_id": result.vendor_id}
            row.sent_at = utcnow()
        row.payload = payload
        kind = (payload.get("action") or {}).get("kind")
        released = release_after_owner(session, row, result) if kind == "crm_owner" else []
        if status == "failed" or (result is not None and result.status == "fallback"):
            record(session, actor=ACTOR, action="rule_action.failed" if status == "failed" else "rule_action.fallback",
                   target=f"outbox:{row.id}",
                   after={"rule": payload.get("rule"), "kind": kind, "lead": row.lead_id,
                          "why": error or (result.detail if result else None)})
    enqueue_actions(released)
    log.info("action.finished", extra={"outbox": outbox_id, "status": status, "kind": kind})


def carry_out(res: Resources, action: Action, target: ActionTarget, key: str, payload: Mapping[str, Any],
              attempts: int, *, pace: bool = True) -> ActionResult:
    """Do one action (raises ConnectorError subclasses; _Later when a channel post must wait for its slot)."""
    if action.kind == "slack_channel":
        return _post_channel(res, target, payload, pace)
    if action.kind == "slack_owner_dm":
        return _owner_dm(res, target, key, payload, attempts, pace)
    if target.crm not in CRMS:
        raise PermanentConnectorError("the lead has no CRM record for this action", vendor="leadbridge")
    connector = res.connector(target.crm)
    if connector is None:
        raise PermanentConnectorError(f"{target.crm} is not configured (no credentials)", vendor=target.crm)
    run = getattr(connector, "run_action", None)
    if run is None:
        raise PermanentConnectorError(f"the {target.crm} connector cannot carry out {action.kind} yet",
                                      vendor=target.crm)
    result: ActionResult = run(action, target, key)
    return result


def _post_channel(res: Resources, target: ActionTarget, payload: Mapping[str, Any], pace: bool,
                  why: str | None = None) -> ActionResult:
    from connectors.slack import HotLeadAlert

    with res.db.session() as session:
        rule = session.get(AlertRule, int(payload.get("rule_id") or 0))
        notifier = notifier_for(res, rule) if rule is not None else res.slack()
    channel = str(payload.get("channel") or "")
    if notifier is None:
        raise PermanentConnectorError("no Slack webhook: set SLACK_WEBHOOK_URL or give the rule its own",
                                      vendor="slack")
    interval = res.settings.alert_channel_interval
    if interval and pace:
        wait = reserve_channel_slot(res.redis, channel, interval)
        if wait > MAX_ALERT_DELAY:
            raise PermanentConnectorError(f"{channel} has a backlog of {wait:.0f} s of alerts", vendor="slack")
        if wait > 0.001:
            raise _Later(wait)
    notifier.send_hot_lead(HotLeadAlert(
        name=target.name, company=target.company, score=target.score, grade=target.grade, reasons=list(target.reasons),
        crm_url=target.crm_url, previous_score=target.previous_score, rule=target.rule))
    if why:
        return ActionResult("fallback", f"posted to {channel} instead: {why}")
    return ActionResult("done", f"posted to {channel}")


def _owner_dm(res: Resources, target: ActionTarget, key: str, payload: Mapping[str, Any], attempts: int,
              pace: bool) -> ActionResult:
    """DM the lead's CRM owner in Slack; without a way to (no token, owner, member or scope), the channel."""
    from connectors.slack import HotLeadAlert, build_hot_lead_message

    bot = slack_bot(res)
    if bot is None:
        return _post_channel(res, target, payload, pace, "no SLACK_BOT_TOKEN to message the owner")
    if not target.owner_id:
        return _post_channel(res, target, payload, pace, "the lead has no owner in the CRM")
    connector = res.connector(target.crm) if target.crm in CRMS else None
    lookup = getattr(connector, "owner_email", None)
    if lookup is None:
        return _post_channel(res, target, payload, pace, f"owner e-mails cannot be read from {target.crm or 'the CRM'}")
    try:
        email = lookup(target.owner_id)
    except PermanentConnectorError as exc:
        return _post_channel(res, target, payload, pace, f"owner {target.owner_id} not found: {_said(exc)}")
    if not email:
        return _post_channel(res, target, payload, pace, f"owner {target.owner_id} has no e-mail in the CRM")
    message = build_hot_lead_message(HotLeadAlert(
        name=target.name, company=target.company, score=target.score, grade=target.grade, reasons=list(target.reasons),
        crm_url=target.crm_url, previous_score=target.previous_score, rule=target.rule))
    try:
        user = bot.user_by_email(email)
        if user is None:
            return _post_channel(res, target, payload, pace,
                                 f"owner {target.owner_id} is not in Slack (users_not_found)")
        # The first try cannot have posted: only a retry looks for this key in the DM's history first.
        dm = bot.send_dm(user, message, key, check_first=attempts > 1)
    except AuthConnectorError as exc:
        return _post_channel(res, target, payload, pace, f"the bot token cannot DM: {exc.vendor_message}")
    except PermanentConnectorError as exc:
        return _post_channel(res, target, payload, pace, f"Slack refused the DM: {exc.vendor_message}")
    return ActionResult("exists" if dm.existed else "done",
                        f"DM to owner {target.owner_id} ({user})" + (", found already posted" if dm.existed else ""),
                        vendor_id=dm.ts)


def slack_bot(res: Resources) -> Any:
    """The Slack Web API client with the bot token, or None without SLACK_BOT_TOKEN."""
    token = res.settings.slack_bot_token
    if token is None:
        return None
    from connectors.slack import SlackBot

    return SlackBot(token.get_secret_value(), base_url=res.settings.slack_api_url)


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


def notifier_for(res: Resources, rule: AlertRule) -> Any:
    """The rule's own Slack webhook (stored encrypted) when it has one, else the global one."""
    stored = (rule.routing or {}).get("webhook_url")
    if not stored:
        return res.slack()
    from connectors.slack import SlackNotifier
    from storage.crypto import decrypt

    return SlackNotifier(decrypt(stored), retry_attempts=1)
