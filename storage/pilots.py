"""Pilots and lead groups in the database (issue 17): the pilot rows and each lead's group, insert-only.

A lead's group is written once, when the lead is first scored during a running pilot, and never updated:
`insert_groups` skips leads that have one. The lifecycle (start, pause, resume, end, audited) is
services.pilots; workers follow the running pilot through `PILOT_KEY` (tasks.resources).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.keys import PILOT_KEY
from storage.models import Lead, LeadCrmId, LeadGroup, Pilot, PilotFacts, ScoreHistory

PILOT, CONTROL = "pilot", "control"
GROUPS = (PILOT, CONTROL)
UNITS = ("lead", "owner")
RUNNING, PAUSED, ENDED = "running", "paused", "ended"
OPEN = (RUNNING, PAUSED)
# Where a lead's CRM owner is found among its stored properties (unit "owner"): the canonical name first.
OWNER_PROPERTIES = ("owner", "hubspot_owner_id", "OwnerId")


@dataclass(frozen=True)
class PilotConfig:
    """What scoring needs of the running pilot (workers cache it)."""

    id: int
    unit: str
    control_share: float
    salt: str


def open_pilot(session: Session) -> Pilot | None:
    """The pilot that is running or paused, if any (there is at most one)."""
    return session.scalars(select(Pilot).where(Pilot.status.in_(OPEN)).order_by(Pilot.id.desc())).first()


def latest_pilot(session: Session) -> Pilot | None:
    """The newest pilot in any state (None before the first)."""
    return session.scalars(select(Pilot).order_by(Pilot.id.desc())).first()


def running_config(session: Session) -> PilotConfig | None:
    """The running pilot's assignment settings, or None while no pilot runs."""
    row = session.scalars(select(Pilot).where(Pilot.status == RUNNING).order_by(Pilot.id.desc())).first()
    return None if row is None else PilotConfig(row.id, row.unit, row.control_share, row.salt)


def insert_groups(session: Session, pilot_id: int, groups: Mapping[int, tuple[str, str | None]],
                  at: Any) -> set[int]:
    """Store {lead id: (group, cluster)} in one statement; a lead that already has a group keeps it. Returns the
    lead ids stored now."""
    if not groups:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    rows = [{"lead_id": lead_id, "pilot_id": pilot_id, "group": group, "cluster": cluster, "assigned_at": at}
            for lead_id, (group, cluster) in sorted(groups.items())]
    statement = insert(LeadGroup).on_conflict_do_nothing(index_elements=["lead_id"]).returning(LeadGroup.lead_id)
    return set(session.scalars(statement, rows))


def group_states(session: Session, lead_ids: Iterable[int]) -> dict[int, tuple[str, bool]]:
    """{lead id: (group, whether its score is hidden)} of the leads among `lead_ids` that have a group."""
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return {}
    rows = session.execute(select(LeadGroup.lead_id, LeadGroup.group, Pilot.status)
                           .join(Pilot, Pilot.id == LeadGroup.pilot_id).where(LeadGroup.lead_id.in_(ids)))
    return {lead_id: (group, score_hidden(group, status)) for lead_id, group, status in rows}


def groups_of(session: Session, lead_ids: Iterable[int]) -> dict[int, str]:
    """{lead id: group} of the leads among `lead_ids` that have one."""
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return {}
    return dict(session.execute(select(LeadGroup.lead_id, LeadGroup.group).where(LeadGroup.lead_id.in_(ids))).all())


def group_counts(session: Session, pilot_id: int) -> dict[str, int]:
    """Leads assigned to each group of one pilot."""
    counts = dict(session.execute(select(LeadGroup.group, func.count()).where(LeadGroup.pilot_id == pilot_id)
                                  .group_by(LeadGroup.group)).all())
    return {group: int(counts.get(group, 0)) for group in GROUPS}


def owners_of(session: Session, lead_ids: Iterable[int]) -> dict[int, str]:
    """{lead id: CRM owner key} from the leads' stored properties, for the leads that name an owner."""
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return {}
    out: dict[int, str] = {}
    for lead_id, properties in session.execute(select(Lead.id, Lead.properties).where(Lead.id.in_(ids))):
        owner = next((str(v) for k in OWNER_PROPERTIES if (v := (properties or {}).get(k)) not in (None, "")), None)
        if owner:
            out[lead_id] = owner[:64]
    return out


# The lead's group and its pilot's status, for queries that already join leads (outer: most leads have none).
GROUP_COLUMNS = (LeadGroup.group, Pilot.status)


def join_groups(query: Select[Any]) -> Select[Any]:
    """`query` (which selects from leads) with each lead's group and pilot outer-joined (see GROUP_COLUMNS)."""
    return (query.outerjoin(LeadGroup, LeadGroup.lead_id == Lead.id)
            .outerjoin(Pilot, Pilot.id == LeadGroup.pilot_id))


def score_hidden(group: str | None, pilot_status: str | None) -> bool:
    """True for a control lead of a pilot that has not ended: its score is not shown and triggers nothing."""
    return group == CONTROL and pilot_status in OPEN


def publish_pilot_version(redis: Any) -> None:
    """Tell every worker the pilots changed (they re-read the running pilot before their next batch)."""
    redis.incr(PILOT_KEY)


def published_pilot_version(redis: Any) -> int | None:
    """The pilot version workers were told (None: never published, or Redis lost it)."""
    raw = redis.get(PILOT_KEY)
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


@dataclass(frozen=True)
class PilotLead:
    """One lead of a pilot with what leadbridge knows (group, first threshold crossing) and the CRM facts last read
    (None before the first read)."""

    lead_id: int
    group: str
    cluster: str | None
    created_at: datetime
    crossed_at: datetime | None
    facts: PilotFacts | None


def pilot_leads(session: Session, pilot: Pilot) -> list[PilotLead]:
    """Every lead of a pilot, with its first score at or above the pilot's threshold and its CRM facts."""
    crossing = (select(ScoreHistory.lead_id, func.min(ScoreHistory.created_at).label("at"))
                .join(LeadGroup, LeadGroup.lead_id == ScoreHistory.lead_id)
                .where(LeadGroup.pilot_id == pilot.id, ScoreHistory.score >= pilot.threshold)
                .group_by(ScoreHistory.lead_id).subquery())
    rows = session.execute(
        select(LeadGroup.lead_id, LeadGroup.group, LeadGroup.cluster, Lead.created_at, crossing.c.at, PilotFacts)
        .join(Lead, Lead.id == LeadGroup.lead_id)
        .outerjoin(crossing, crossing.c.lead_id == LeadGroup.lead_id)
        .outerjoin(PilotFacts, PilotFacts.lead_id == LeadGroup.lead_id)
        .where(LeadGroup.pilot_id == pilot.id).order_by(LeadGroup.lead_id))
    return [PilotLead(*row) for row in rows]


@dataclass(frozen=True)
class FactsToRead:
    """A pilot lead whose CRM facts are due for a (re)read: its records in one CRM and when the lead was created."""

    lead_id: int
    object_ids: tuple[str, ...]  # a converted Salesforce Lead and its Contact: both hold some of the activity
    created_at: datetime


def facts_to_read(session: Session, crm: str, object_types: Sequence[str], read_before: datetime,
                  limit: int) -> list[FactsToRead]:
    """Leads of open pilots (and of ended ones whose leads are still open) with a record in `crm`, never read or
    read before `read_before` and not closed yet, the least recently read first."""
    query = (select(LeadGroup.lead_id, LeadCrmId.object_id, Lead.created_at)
             .join(Lead, Lead.id == LeadGroup.lead_id)
             .join(LeadCrmId, LeadCrmId.lead_id == LeadGroup.lead_id)
             .outerjoin(PilotFacts, PilotFacts.lead_id == LeadGroup.lead_id)
             .where(LeadCrmId.crm == crm, LeadCrmId.object_type.in_(list(object_types)),
                    PilotFacts.closed_at.is_(None),
                    (PilotFacts.read_at.is_(None)) | (PilotFacts.read_at < read_before))
             .order_by(PilotFacts.read_at.is_not(None), PilotFacts.read_at, LeadGroup.lead_id, LeadCrmId.id)
             .limit(limit * 4))
    out: dict[int, FactsToRead] = {}
    for lead_id, object_id, created_at in session.execute(query):
        if lead_id not in out and len(out) == limit:
            break
        known = out.get(lead_id)
        out[lead_id] = FactsToRead(lead_id, (*known.object_ids, object_id) if known else (object_id,), created_at)
    return list(out.values())


def save_facts(session: Session, facts: Mapping[int, Mapping[str, Any]], read_at: datetime) -> int:
    """Store each lead's CRM facts (first_touch_at, sql_at, opportunity_at, amount, closed_at, won), read now."""
    for lead_id, values in facts.items():
        row = session.get(PilotFacts, lead_id) or PilotFacts(lead_id=lead_id)
        for name in ("first_touch_at", "sql_at", "opportunity_at", "amount", "closed_at", "won"):
            setattr(row, name, values.get(name))
        row.amount = float(row.amount or 0.0)
        row.read_at = read_at
        session.add(row)
    return len(facts)
