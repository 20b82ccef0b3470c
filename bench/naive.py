"""The naive pipeline the e2e benchmark compares against: one Celery task per event, one CRM call per event.

It reuses leadbridge's own plain functions (ingest, scoring, connectors); only the orchestration is
naive. The worker runs as `celery -A bench.naive:app worker -Q ingest,naive`, consuming the same
`tasks.ingest.process_events` messages the web process sends, and fans each batch out per event.
"""

from __future__ import annotations

from celery import Celery

from core.runtime import service_urls
from core.settings import load_settings
from tasks.config import CeleryConfig

settings = load_settings()
app = Celery("leadbridge-naive")
app.config_from_object(CeleryConfig(settings, service_urls(settings)))
app.conf.task_routes = {"bench.naive.*": {"queue": "naive"}, "tasks.ingest.*": {"queue": "ingest"}}
app.conf.task_queues = None  # declare queues on demand (ingest and naive)


@app.task(name="tasks.ingest.process_events")
def fan_out(ids: list[int]) -> int:
    """Split a delivered batch into one task per event."""
    for inbox_id in ids:
        process_one.delay(inbox_id)
    return len(ids)


@app.task(name="bench.naive.process_one", acks_late=True)
def process_one(inbox_id: int) -> bool:
    """Ingest one event, score its one lead, and write that lead to the CRM in its own call."""
    from sqlalchemy import select

    from connectors.base import shown_values
    from storage.leads import crm_id_map, crm_ids_of
    from storage.models import Lead
    from tasks.ingest import ingest_rows
    from tasks.resources import resources
    from tasks.score import score_and_store

    res = resources()
    with res.db.session(write=True) as session:
        result = ingest_rows(session, [inbox_id], res)
    if not result.leads:
        return False
    changes = score_and_store(res, sorted(result.leads), "event")
    connector = res.connector("hubspot")
    for change in changes:
        with res.db.session() as session:
            lead = session.scalars(select(Lead).where(Lead.id == change.lead_id)).one()
            values = shown_values(lead.score, lead.grade, lead.reasons, lead.model_version, lead.scored_at)
            hubspot_id = crm_id_map(crm_ids_of(session, [lead.id]).get(lead.id, [])).get("hubspot")
        if hubspot_id and connector is not None:
            connector.write_fields({hubspot_id: values})
    return True
