"""The pilot's lifecycle (issue 17): start, pause, resume, end; each audited, invalid transitions refused.

At most one pilot is open (running or paused). While it runs, every lead scored for the first time gets a
group (tasks.score.assign_groups); pausing stops new assignments and resuming restarts them; ending stops
them for good. Groups never change. The admin UI, the JSON API and `leadbridge value pilot` call these
functions; after the commit, `announce_pilot` tells the workers.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.records import utcnow
from services import Conflict, OperationError, clean_text
from storage.audit import record
from storage.models import AlertRule, Pilot
from storage.pilots import (
    ENDED,
    PAUSED,
    RUNNING,
    UNITS,
    group_counts,
    latest_pilot,
    open_pilot,
    publish_pilot_version,
)

DEFAULT_THRESHOLD = 75  # the MQL crossing when no alert rule says otherwise
MAX_CONTROL_SHARE = 0.5
MAX_HORIZON = 10_000_000


@dataclass(frozen=True)
class PilotInput:
    """What an admin sets when starting a pilot (threshold None: the alert rules' threshold)."""

    name: str
    control_share: float = 0.10
    unit: str = "lead"
    threshold: int | None = None
    horizon: int = 2000
    effect: float = 0.05


def default_threshold(session: Session) -> int:
    """The score that counts as the alert/MQL crossing: the lowest enabled alert rule's threshold, else 75."""
    lowest = session.scalar(select(func.min(AlertRule.threshold)).where(AlertRule.enabled.is_(True)))
    return int(lowest) if lowest is not None else DEFAULT_THRESHOLD


def _checked(session: Session, data: PilotInput) -> dict[str, Any]:
    """The new pilot's settings, or OperationError naming the first bad one."""
    name = clean_text(data.name, "name", max_length=100)
    share = float(data.control_share)
    if not (math.isfinite(share) and 0 < share <= MAX_CONTROL_SHARE):
        raise OperationError(f"control_share must be above 0 and at most {MAX_CONTROL_SHARE}, got {data.control_share}")
    if data.unit not in UNITS:
        raise OperationError(f"unit must be one of {', '.join(UNITS)}, not {data.unit!r}")
    threshold = default_threshold(session) if data.threshold is None else int(data.threshold)
    if not 0 <= threshold <= 100:
        raise OperationError(f"threshold is a score from 0 to 100, got {threshold}")
    if not 1 <= int(data.horizon) <= MAX_HORIZON:
        raise OperationError(f"horizon is a number of closed leads from 1 to {MAX_HORIZON:,}, got {data.horizon}")
    effect = float(data.effect)
    if not (math.isfinite(effect) and 0 < effect < 1):
        raise OperationError(f"effect is a rise in the win rate above 0 and below 1 (0.05 = 5 points), got {data.effect}")
    return {"name": name, "control_share": share, "unit": data.unit, "threshold": threshold,
            "horizon": int(data.horizon), "effect": effect}


def _audit(session: Session, actor: str, action: str, pilot: Pilot, before: str | None) -> None:
    after = pilot_view(session, pilot, counts=False)
    record(session, actor=actor, action=f"pilot.{action}", target=f"pilot:{pilot.id}",
           before={"status": before} if before else None, after=after)


def start_pilot(session: Session, actor: str, data: PilotInput) -> Pilot:
    """Start a pilot; refused while another one is running or paused."""
    settings = _checked(session, data)
    current = open_pilot(session)
    if current is not None:
        raise Conflict(f"pilot {current.name!r} is {current.status}; end it before starting another",
                       code="pilot_open")
    pilot = Pilot(status=RUNNING, salt=secrets.token_hex(16), started_at=utcnow(), created_by=actor[:320],
                  **settings)
    session.add(pilot)
    session.flush()
    _audit(session, actor, "start", pilot, None)
    return pilot


def _transition(session: Session, actor: str, action: str, allowed: str, status: str) -> Pilot:
    """Move the open pilot from `allowed` to `status`, or Conflict saying why not."""
    pilot = open_pilot(session)
    if pilot is None:
        latest = latest_pilot(session)
        what = f"pilot {latest.name!r} has ended" if latest is not None else "no pilot has been started"
        raise Conflict(f"cannot {action}: {what}", code="no_pilot")
    if pilot.status != allowed:
        raise Conflict(f"cannot {action}: pilot {pilot.name!r} is {pilot.status}", code="pilot_" + pilot.status)
    before = pilot.status
    pilot.status = status
    if status == PAUSED:
        pilot.paused_at = utcnow()
    elif status == RUNNING:
        pilot.paused_at = None
    else:
        pilot.ended_at = utcnow()
    session.flush()
    _audit(session, actor, action, pilot, before)
    return pilot


def pause_pilot(session: Session, actor: str) -> Pilot:
    """Pause the running pilot: new leads are not assigned meanwhile; control leads stay held back."""
    return _transition(session, actor, "pause", RUNNING, PAUSED)


def resume_pilot(session: Session, actor: str) -> Pilot:
    """Resume the paused pilot (an ended pilot cannot be resumed)."""
    return _transition(session, actor, "resume", PAUSED, RUNNING)


def end_pilot(session: Session, actor: str) -> Pilot:
    """End the open pilot (running or paused): no more assignments; control leads show their scores on their next
    write. Groups stay for the results."""
    pilot = open_pilot(session)
    return _transition(session, actor, "end", pilot.status if pilot is not None else RUNNING, ENDED)


def pilot_view(session: Session, pilot: Pilot, *, counts: bool = True) -> dict[str, Any]:
    """A pilot as the API, the CLI and the audit log show it, with its group sizes (leads assigned)."""
    view: dict[str, Any] = {
        "id": pilot.id, "name": pilot.name, "status": pilot.status, "unit": pilot.unit,
        "control_share": pilot.control_share, "threshold": pilot.threshold, "horizon": pilot.horizon,
        "effect": pilot.effect, "started_at": pilot.started_at, "paused_at": pilot.paused_at,
        "ended_at": pilot.ended_at, "created_by": pilot.created_by,
    }
    if counts:
        view["groups"] = group_counts(session, pilot.id)
    return view


def current_view(session: Session) -> dict[str, Any] | None:
    """The open pilot, else the newest ended one, as pilot_view shows it; None before the first pilot."""
    pilot = open_pilot(session) or latest_pilot(session)
    return None if pilot is None else pilot_view(session, pilot)


def announce_pilot(redis: Any) -> bool:
    """After the commit: tell the workers; False if Redis could not be told (they re-read within PILOT_TTL)."""
    try:
        publish_pilot_version(redis)
    except Exception:  # noqa: BLE001 - the table is right; workers fall back to re-reading it
        return False
    return True
