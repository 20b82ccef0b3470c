"""Score bands and outcome definitions in the database: the versions, the one in force, the scores bands read.

Every change adds a row (never an update), so the history stays, and is audited in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.bands import DEFAULT_BANDS, Band
from core.bands import BandSet as BandSetData
from core.outcome_rules import DEFAULT_RULES
from core.records import utcnow
from storage import audit
from storage.models import BandSet, Lead, OutcomeDefinition

# ---- bands --------------------------------------------------------------------------------------


def band_set_row(session: Session) -> BandSet | None:
    """The newest band_sets row, or None (the default quantile bands are in force)."""
    return session.scalars(select(BandSet).order_by(BandSet.version.desc()).limit(1)).first()


def band_set_in_force(session: Session) -> tuple[int, BandSetData]:
    """(version, band set) in force: version 0 is the default, never saved."""
    row = band_set_row(session)
    if row is None:
        return 0, DEFAULT_BANDS
    return row.version, BandSetData(row.mode, tuple(Band(str(b["name"]), float(b["value"])) for b in row.bands))


def save_band_set(session: Session, band_set: BandSetData, actor: str) -> int:
    """Store a validated band set as the next version, audited; returns its version."""
    version, before = band_set_in_force(session)
    row = BandSet(version=version + 1, mode=band_set.mode, bands=band_set.to_json()["bands"], actor=actor,
                  created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action="bands.update", target=f"bands v{row.version}",
                 before=before.to_json(), after=band_set.to_json())
    return row.version


def recent_scores(session: Session, since: datetime) -> list[int]:
    """The current score of every lead scored since `since` (what band shares and quantile cut-offs read)."""
    query = select(Lead.score).where(Lead.scored_at >= since, Lead.score.is_not(None))
    return [int(s) for s in session.scalars(query)]


# ---- outcome definitions --------------------------------------------------------------------------


def outcome_version(session: Session) -> int:
    """The version of the outcome definition in force (the highest; 0: the defaults were never changed)."""
    return int(session.scalar(select(func.max(OutcomeDefinition.version))) or 0)


def outcome_changed_at(session: Session) -> datetime | None:
    """When the outcome definition in force was saved (None: the defaults, never changed)."""
    return session.scalar(select(OutcomeDefinition.created_at).order_by(OutcomeDefinition.version.desc()).limit(1))


def outcome_rules(session: Session) -> dict[str, dict[str, Any]]:
    """The rule in force per CRM (the newest row of each; the default where none was saved)."""
    out = {crm: dict(rule) for crm, rule in DEFAULT_RULES.items()}
    newest = (select(OutcomeDefinition.crm, func.max(OutcomeDefinition.version).label("v"))
              .group_by(OutcomeDefinition.crm).subquery())
    query = select(OutcomeDefinition).join(newest, (newest.c.crm == OutcomeDefinition.crm)
                                           & (newest.c.v == OutcomeDefinition.version))
    for row in session.scalars(query):
        out[row.crm] = dict(row.rule)
    return out


def save_outcome_rule(session: Session, crm: str, rule: Mapping[str, Any], actor: str) -> int:
    """Store a validated rule for `crm` as the next version, audited; returns the version."""
    version = outcome_version(session) + 1
    before = outcome_rules(session).get(crm)
    session.add(OutcomeDefinition(version=version, crm=crm, rule=dict(rule), actor=actor, created_at=utcnow()))
    session.flush()
    audit.record(session, actor=actor, action="outcomes.definition", target=f"{crm} v{version}",
                 before=before, after=dict(rule))
    return version


def outcome_history(session: Session, limit: int = 50) -> list[OutcomeDefinition]:
    """Saved outcome definitions, newest first."""
    return list(session.scalars(select(OutcomeDefinition).order_by(OutcomeDefinition.version.desc()).limit(limit)))
