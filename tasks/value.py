"""The pilot's CRM facts and its weekly Slack summary (issue 17): thin periodic tasks over plain functions.

`collect_facts` reads, for the leads of a pilot, what their owners did in the CRM (touches, stage history,
opportunities; connectors.<crm>.activity) and stores the facts the KPIs need (storage.pilots.save_facts);
`weekly_summary` posts the pilot's sentence and KPIs to Slack once a week while a pilot is open.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.records import utcnow
from scoring.activity import lead_facts, merge_activity
from scoring.value import LeadFacts, Plan, ValueReport, kpi_text, value_report
from storage.leads import WRITE_TYPES
from storage.models import Pilot
from storage.pilots import OPEN, PilotLead, facts_to_read, latest_pilot, pilot_leads, save_facts
from tasks.resources import Resources, resources
from tasks.schedule import periodic

log = logging.getLogger(__name__)

REREAD = timedelta(minutes=10)  # an open lead's facts are read again this long after the last read
BATCH = 500  # leads per CRM per run
SUMMARY_EVERY = timedelta(days=7)


def collect_facts_now(res: Resources, now: datetime | None = None, limit: int = BATCH) -> dict[str, int]:
    """Read and store the CRM facts of the pilot leads that are due, per configured CRM; {crm: leads read}."""
    now = now or utcnow()
    read: dict[str, int] = {}
    for crm, object_types in WRITE_TYPES.items():
        connector = res.connector(crm)
        if connector is None:
            continue
        with res.db.session() as session:
            due = facts_to_read(session, crm, object_types, now - REREAD, limit)
        if not due:
            continue
        ids = [object_id for lead in due for object_id in lead.object_ids]
        activity = connector.read_activity(ids)
        facts: dict[int, dict[str, Any]] = {}
        for lead in due:
            merged = merge_activity([activity[i] for i in lead.object_ids if i in activity])
            if merged is None:  # the CRM no longer has the record: keep what was read before
                continue
            f = lead_facts(merged, lead_id=str(lead.lead_id), group="", created_at=lead.created_at,
                           rules=connector.sql_rules)
            facts[lead.lead_id] = {"first_touch_at": f.first_touch_at, "sql_at": f.sql_at,
                                   "opportunity_at": f.opportunity_at, "amount": f.amount, "closed_at": f.closed_at,
                                   "won": f.won}
        with res.db.session() as session:
            read[crm] = save_facts(session, facts, now)
    return read


@periodic("tasks.value.collect_facts", every=300.0, soft_time_limit=240, time_limit=280)
def collect_facts() -> dict[str, int]:
    """Beat: the pilot leads' touches, stages and opportunities from each configured CRM."""
    from connectors.base import ConnectorError

    try:
        read = collect_facts_now(resources())
    except ConnectorError as exc:
        log.warning("value.facts.failed", extra={"error": type(exc).__name__, "vendor": exc.vendor})
        return {}
    if read:
        log.info("value.facts.read", extra={"leads": read})
    return read


def lead_facts_of(row: PilotLead) -> LeadFacts:
    """A stored pilot lead as the KPIs read it."""
    f = row.facts
    return LeadFacts(
        lead_id=str(row.lead_id), group=row.group, created_at=row.created_at, cluster=row.cluster,
        crossed_at=row.crossed_at, first_touch_at=f.first_touch_at if f else None, sql_at=f.sql_at if f else None,
        opportunity_at=f.opportunity_at if f else None, amount=float(f.amount or 0.0) if f else 0.0,
        closed_at=f.closed_at if f else None, won=f.won if f else None)


def stored_facts(session: Session, pilot: Pilot) -> list[LeadFacts]:
    """Every lead of a pilot as the KPIs read it: its group, first threshold crossing and the CRM facts read."""
    return [lead_facts_of(row) for row in pilot_leads(session, pilot)]


def pilot_report(session: Session, pilot: Pilot, now: datetime) -> ValueReport:
    """A pilot's KPIs as they stand at `now`, under the plan it declared when it started."""
    plan = Plan(horizon=pilot.horizon, effect=pilot.effect, clustered=pilot.unit != "lead")
    return value_report(stored_facts(session, pilot), now, pilot.control_share, plan)


def send_summary_now(res: Resources, now: datetime | None = None, *, force: bool = False) -> bool:
    """Post the open pilot's weekly summary to Slack when a week has passed since the last (or `force`)."""
    from connectors.slack_value import build_value_message

    now = now or utcnow()
    notifier = res.slack()
    if notifier is None:
        return False
    with res.db.session() as session:
        pilot = latest_pilot(session)
        if pilot is None or pilot.status not in OPEN:
            return False
        last = pilot.summary_at or pilot.started_at
        if not force and now - last < SUMMARY_EVERY:
            return False
        report = pilot_report(session, pilot, now)
        url = f"{res.settings.public_url.rstrip('/')}/admin/value" if res.settings.public_url else None
        notifier.post(build_value_message(pilot.name, report.sentence, [kpi_text(k) for k in report.kpis.values()],
                                          report.leads, url))
        pilot.summary_at = now  # only after Slack took it: a failed post is tried again next hour
    return True


@periodic("tasks.value.weekly_summary", every=3600.0, soft_time_limit=60, time_limit=90)
def weekly_summary() -> bool:
    """Beat (hourly check): the pilot's weekly Slack summary, once a week while a pilot is open."""
    from connectors.base import ConnectorError

    try:
        return send_summary_now(resources())
    except ConnectorError as exc:
        log.warning("value.summary.failed", extra={"error": type(exc).__name__})
        return False
