"""Re-labelling: after the outcome definition changes, the outcomes table is re-derived under the new one.

`relabel_outcomes` (a plain function: services/outcome_definitions.py runs it when a definition is saved, the CLI
too) keeps the recorded outcomes of the CRM's rules that the new definition still counts (connectors/<crm>/
outcomes.py `keeps`: a closed-won deal stays while deals count), deletes the others, then reads every stored event
of the CRM again under the new rules and records what they report (a lead status value, an earlier lifecycle stage).
Outcomes from elsewhere (a relayed Salesforce outcome event, a CSV import) are left alone. The next CRM read starts
from the beginning (its since-marker is cleared), so outcomes only the CRM knows come back under the new rules.
Retraining then learns from the new labels: the caller enqueues `tasks.learning.retrain` (RETRAIN_TASK).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from connectors.registry import outcomes_kept, outcomes_of_events
from core.keys import OUTCOMES_SINCE_KEY
from storage.bands import outcome_rules
from storage.outcomes import (
    association_events,
    crm_events,
    crm_outcome_rows,
    delete_outcomes,
    record_outcomes,
)

log = logging.getLogger(__name__)


def relabel_outcomes(session: Session, crm: str, redis: Any = None) -> dict[str, int]:
    """Re-derive `crm`'s outcomes under the definition in force, in the caller's transaction; counts of the change."""
    rule = outcome_rules(session)[crm]
    rows = crm_outcome_rows(session, crm)
    kept = {id(o) for o in outcomes_kept(crm, [o for _, o in rows], rule)}
    dropped = [row_id for row_id, outcome in rows if id(outcome) not in kept]
    delete_outcomes(session, dropped)
    recorded = 0
    for chunk in crm_events(session, crm):
        by_crm, _unresolved = outcomes_of_events(
            chunk, lambda c, object_type, ids: association_events(session, c, object_type, ids), {crm: rule})
        recorded += record_outcomes(session, crm, by_crm.get(crm, [])).recorded
    if redis is not None:
        redis.delete(OUTCOMES_SINCE_KEY.format(crm=crm))
    counts = {"before": len(rows), "dropped": len(dropped), "added": recorded,
              "after": len(rows) - len(dropped) + recorded}
    log.info("outcomes.relabelled", extra={"crm": crm, **counts})
    return counts
