"""Score bands and the outcome definition: view and change them (the admin page, the JSON API and the CLI).

- Bands (core/bands.py): a change is validated, stored as a new version and audited; after the commit
  `publish_bands` recomputes the cut-offs the writeback reads, so the tier field follows at the next write.
- Outcome definition (core/outcome_rules.py): a change is validated, stored as a new version, audited, and
  re-labels the CRM's history in the same transaction (tasks/relabel.py); after the commit `retrain_after`
  queues a retraining, which learns the new labels (the gate compares it with the rules, not with a champion
  trained under the old definition: scoring/champion.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.bands import PRESETS, BandError, parse_band_set
from core.outcome_rules import CRITERIA, LIFECYCLE_STAGES, OutcomeRuleError, describe, parse_rule
from services import Conflict, OperationError
from storage import audit
from storage.bands import outcome_history, outcome_rules, outcome_version, save_band_set, save_outcome_rule
from storage.db import Database
from tasks.bands import bands_report, refresh_bands_now
from tasks.names import RETRAIN_TASK
from tasks.relabel import relabel_outcomes

log = logging.getLogger(__name__)


@dataclass
class BandView:
    """One band: its name, its value (share % or lowest score), its cut-off in score points, its share of leads."""

    name: str
    value: float
    lowest: int
    share: float


@dataclass
class BandsView:
    """The band set in force, resolved over the last `window_days` days' `leads`."""

    version: int
    mode: str
    bands: list[BandView]
    leads: int
    window_days: int
    presets: dict[str, Any] = field(default_factory=dict)


def bands_view(session: Session, now: datetime | None = None) -> BandsView:
    """The bands in force with their cut-offs and shares, computed now (not the workers' cached copy)."""
    report = bands_report(session, now)
    lowest = dict((name, int(value)) for name, value in report["cutoffs"])
    bands = [BandView(b["name"], float(b["value"]), lowest[b["name"]], float(report["shares"][b["name"]]))
             for b in report["bands"]]
    return BandsView(report["version"], report["mode"], bands, report["leads"], report["window_days"],
                     {name: preset.to_json() for name, preset in PRESETS.items()})


def save_bands(session: Session, actor: str, data: Any) -> int:
    """Validate and store a band set (a preset name or {"mode", "bands"}), audited; returns its version."""
    if isinstance(data, str):
        if data not in PRESETS:
            raise OperationError(f"unknown band preset {data!r}: choose one of {', '.join(PRESETS)}")
        data = PRESETS[data].to_json()
    try:
        band_set = parse_band_set(data)
    except BandError as exc:
        raise OperationError(str(exc)) from None
    return save_band_set(session, band_set, actor)


def publish_bands(db: Database, redis: Any) -> bool:
    """After the commit: recompute the cut-offs the writeback reads (False when Redis is unreachable; the beat
    refreshes them within five minutes)."""
    try:
        refresh_bands_now(db, redis)
    except Exception:  # noqa: BLE001 - the table is right; the beat task catches up
        log.warning("bands.publish_failed")
        return False
    return True


@dataclass
class DefinitionView:
    """One saved outcome definition."""

    version: int
    crm: str
    rule: dict[str, Any]
    description: str
    actor: str
    created_at: datetime


@dataclass
class OutcomesView:
    """The outcome definition in force per CRM, its version, and the saved history."""

    version: int
    rules: dict[str, dict[str, Any]]
    descriptions: dict[str, str]
    history: list[DefinitionView]
    criteria: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in CRITERIA.items()})
    lifecycle_stages: list[str] = field(default_factory=lambda: list(LIFECYCLE_STAGES))


def outcomes_view(session: Session) -> OutcomesView:
    """What counts as converted in each CRM now, and the versions before."""
    rules = outcome_rules(session)
    history = [DefinitionView(row.version, row.crm, dict(row.rule), describe(row.crm, row.rule), row.actor,
                              row.created_at) for row in outcome_history(session)]
    return OutcomesView(outcome_version(session), rules, {crm: describe(crm, rule) for crm, rule in rules.items()},
                        history)


def save_outcome_definition(session: Session, actor: str, crm: str, data: Any, redis: Any = None
                            ) -> tuple[int, dict[str, int]]:
    """Validate and store `crm`'s new rule, audited, and re-label its history; returns (version, relabel counts)."""
    try:
        rule = parse_rule(crm, data)
    except OutcomeRuleError as exc:
        raise OperationError(str(exc)) from None
    if rule == outcome_rules(session)[crm]:
        raise Conflict(f"the {crm} outcome definition is already {describe(crm, rule)}: nothing changed")
    version = save_outcome_rule(session, crm, rule, actor)
    counts = relabel_outcomes(session, crm, redis)
    audit.record(session, actor=actor, action="outcomes.relabel", target=f"{crm} v{version}", after=counts)
    return version, counts


def retrain_after(celery: Any, crm: str, version: int) -> bool:
    """After the commit: queue a retraining on the new labels (False when the broker is unreachable)."""
    try:
        celery.send_task(RETRAIN_TASK, kwargs={"reason": "outcome_definition", "force": True},
                         retry=False, ignore_result=True)
    except Exception:  # noqa: BLE001 - the hourly retraining check picks the new labels up anyway
        log.warning("outcomes.retrain_not_queued", extra={"crm": crm, "version": version})
        return False
    return True
