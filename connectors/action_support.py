"""What both CRMs' rule actions (connectors/<crm>/actions.py) share: parameter reading, task texts, the retry unit.

A CRM action is retried as a whole (look for what an earlier attempt made, then make it), never one create call
on its own: a create whose answer was lost may have landed, and only the look-up can tell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import CallPolicy, PermanentConnectorError
from connectors.retry import call_with_retries
from core.actions import TASK_PRIORITIES, Action, ActionResult, ActionTarget

DEFAULT_DUE_DAYS = 1
DEFAULT_PRIORITY = "high"  # a rule's task is for a lead that just crossed its threshold
MAX_DUE_DAYS = 365
KEY_MARKER = "leadbridge action"  # the line of a task's notes that names its idempotency key

Handler = Callable[[Any, Action, ActionTarget, str], ActionResult]


def run_with_retries(connector: CallPolicy, handlers: Mapping[str, Handler], action: Action, target: ActionTarget,
                     key: str) -> ActionResult:
    """Carry out `action` with the handler for its kind, retrying the whole handler on transient errors."""
    handler = handlers.get(action.kind)
    if handler is None:
        vendor = getattr(connector, "crm", "crm")
        raise PermanentConnectorError(f"{vendor} cannot carry out a {action.kind} action; it takes "
                                      f"{', '.join(sorted(handlers))}", vendor=vendor)
    return call_with_retries(lambda: handler(connector, action, target, key), attempts=connector.retry_attempts,
                             max_elapsed=connector.retry_max_elapsed, sleep=connector.sleep)


def record_of(target: ActionTarget, vendor: str) -> str:
    """The CRM record id an action is about; PermanentConnectorError for a lead this CRM does not hold."""
    if target.crm != vendor or not target.object_id:
        raise PermanentConnectorError(f"lead {target.lead_id} has no {vendor} record to act on", vendor=vendor)
    return target.object_id


def due_days(action: Action, vendor: str) -> int:
    """The task's due date in days from now (`due_days`, default 1)."""
    raw = action.params.get("due_days", DEFAULT_DUE_DAYS)
    try:
        days = int(raw)
    except (TypeError, ValueError):
        days = -1
    if isinstance(raw, bool) or not 0 <= days <= MAX_DUE_DAYS or str(raw).strip() != str(days):
        raise PermanentConnectorError(f"crm_task: due_days must be a whole number of days from 0 to {MAX_DUE_DAYS}, "
                                      f"not {raw!r}", vendor=vendor)
    return days


def due_at(action: Action, vendor: str, now: datetime | None = None) -> datetime:
    """When the task is due: now plus due_days."""
    return (now or datetime.now(UTC)) + timedelta(days=due_days(action, vendor))


def priority(action: Action, vendor: str) -> str:
    """The task's priority, one of core.actions.TASK_PRIORITIES (default high)."""
    value = str(action.params.get("priority") or DEFAULT_PRIORITY).strip().lower()
    if value not in TASK_PRIORITIES:
        raise PermanentConnectorError(f"crm_task: priority must be one of {', '.join(TASK_PRIORITIES)}, not "
                                      f"{action.params.get('priority')!r}", vendor=vendor)
    return value


def task_subject(action: Action, target: ActionTarget, limit: int) -> str:
    """The rule's subject, else "Call <name>: score <score> (<grade>)", cut to the CRM's length."""
    subject = str(action.params.get("subject") or "").strip()
    if not subject:
        grade = f" ({target.grade})" if target.grade else ""
        subject = f"Call {target.name or 'lead'}: score {target.score}{grade}"
    return subject[:limit]


def task_notes(target: ActionTarget, key: str) -> str:
    """The task's notes: the lead's top reasons, the CRM link, and the key line a retry searches for."""
    lines = [f"Score {target.score}" + (f" (was {target.previous_score})" if target.previous_score is not None
                                        else "") + (f", rule {target.rule}" if target.rule else "")]
    lines.extend(f"- {reason}" for reason in list(target.reasons)[:5])
    if target.crm_url:
        lines.append(target.crm_url)
    lines.append(f"{KEY_MARKER} {key}")
    return "\n".join(lines)


def owner_ids(action: Action, vendor: str) -> list[str]:
    """The `owners` of a crm_owner action, as ids in the rule's order (duplicates once)."""
    raw = action.params.get("owners") or []
    if isinstance(raw, (str, int)):
        raw = [raw]
    if not isinstance(raw, Sequence) or not all(isinstance(o, (str, int)) and str(o).strip() for o in raw):
        raise PermanentConnectorError("crm_owner: owners must be a list of owner ids", vendor=vendor)
    return list(dict.fromkeys(str(o).strip() for o in raw))


def round_robin(active: Sequence[str], turn: int) -> str:
    """The owner whose turn it is among the active ones."""
    return active[turn % len(active)]
