"""Writeback latency: the CRM's acknowledgement of a write minus the creation of the score written (issue 19)."""

from __future__ import annotations

import time
from datetime import timedelta

from celery import Celery
from sqlalchemy import select

from core.keys import DIRTY_KEY
from core.records import utcnow
from sandbox import SandboxCRM
from services.overview import build_overview
from storage.models import Lead, OutboxItem
from tasks.resources import Resources
from tasks.writeback import flush_once
from tests.crm_ids import has_id, with_ids

CRM_DELAY = 0.4  # seconds the sandbox CRM takes to answer the batch update


def test_writeback_latency_runs_from_the_score_to_the_crms_answer(sandbox: SandboxCRM, res: Resources,
                                                                  redis_url: str) -> None:
    res.connector("hubspot").provision_fields()
    contacts = [sandbox.store.hs_create("contacts", {"email": f"w{i}@acme.io"}, source="CRM_UI")["id"]
                for i in range(3)]
    scored = utcnow()
    with res.db.session(write=True) as session:
        for i, contact_id in enumerate(contacts):
            session.add_all(with_ids(Lead(email=f"w{i}@acme.io", score=40 + i, grade="C",
                                          reasons=["+ requested a demo"], model_version="rules:v1",
                                          scored_at=scored), hubspot=contact_id))
    with res.db.session() as session:
        ids = list(session.scalars(select(Lead.id).where(has_id("hubspot", *contacts))))
    res.redis.sadd(DIRTY_KEY.format(crm="hubspot"), *ids)
    # The CRM is slow to answer: the acknowledgement comes after its answer, not when the call was made.
    sandbox.faults.add({"route": r"/crm/v3/objects/contacts/batch/update$", "kind": "slow", "delay": CRM_DELAY,
                        "count": 1})
    time.sleep(0.2)  # the scores wait a moment in the dirty set, as they do between flushes
    started = time.monotonic()
    assert flush_once(res, "hubspot") == 3
    elapsed = time.monotonic() - started

    with res.db.session() as session:
        batch = session.scalars(select(OutboxItem).where(OutboxItem.object_type == "batch")).one()
        latency = build_overview(session, res.redis, Celery(broker=redis_url), ("writeback",)).latency["writeback"]
    assert batch.sent_at is not None and batch.sent_at >= scored + timedelta(seconds=CRM_DELAY + 0.2)
    # Each record's latency runs from its score's creation to the CRM's answer (the record's created and sent
    # times once were the same instant: 0.0 ms), one sample per record written.
    assert latency.p50 is not None and latency.p99 is not None
    assert CRM_DELAY + 0.2 <= latency.p50 <= latency.p99 <= CRM_DELAY + 0.2 + elapsed + 0.5
    assert latency.count == 3
