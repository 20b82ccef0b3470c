"""Drill (c): for a minute the CRM answers 429 (with Retry-After) and then 500; every final value still lands, once.

30 s of 429 with Retry-After: 2, then 30 s of 500, on every HubSpot CRM call (writes and enrichment reads),
while new people and behaviour keep arriving. Retries must outlast the minute without a dead letter.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests
from sqlalchemy import func, select

from storage.models import Lead
from tests.crm_ids import has_id
from tests.drills.conftest import Stack, report

BROKER_DB = 10
FAULT_SECONDS = 60.0


@pytest.mark.slow
def test_crm_429_then_500(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(BROKER_DB)
    stack.start(workers=1)
    half = len(stack.sim.contacts) // 2
    stack.add_people(half)
    stack.converge(60, "the first people written before the faults")

    admin = stack.sandbox.base_url + "/_sandbox/faults"
    began = time.time()
    # Every HubSpot CRM call fails: batch writes, and the reads that enrich a person seen for the first time.
    requests.post(admin, timeout=5, json={"route": "^/crm/", "kind": "status", "status": 429, "retry_after": 2,
                                          "seconds": FAULT_SECONDS / 2}).raise_for_status()
    requests.post(admin, timeout=5, json={"route": "^/crm/", "kind": "status", "status": 500,
                                          "seconds": FAULT_SECONDS}).raise_for_status()
    feed_rest = stack.sim.contacts[half:]
    from sandbox.simulator import SandboxCrmFeed

    feed = SandboxCrmFeed(stack.sandbox.base_url, crms=("hubspot",))
    for contact in feed_rest:  # new people arrive during the trouble (created by CRM users, not through the API)
        feed.add_contact(stack.sim, contact)
    accepted = stack.send_events(batches=12, batch_size=25, pause=FAULT_SECONDS / 13)
    fault_end = began + FAULT_SECONDS
    time.sleep(max(0.0, fault_end - time.time()))
    started = time.monotonic()
    recovery = stack.converge(90, "every final value written after the faults")
    counts = stack.assert_exactly_once()

    seen = Counter(r["status"] for r in requests.get(stack.sandbox.base_url + "/_sandbox/requests", timeout=10,
                                                     params={"family": "hubspot", "since": began}).json()["requests"])
    assert seen[429] and seen[500], seen
    with stack.db.session() as session:
        not_enriched = session.scalar(select(func.count()).select_from(Lead).where(
            has_id("hubspot"), Lead.enriched_at.is_(None)))
    assert not_enriched == 0, f"{not_enriched} people first seen during the trouble were never enriched"
    report("c CRM 429+500", recovery_after_faults=recovery, fault_seconds=FAULT_SECONDS, http_429=seen[429],
           http_500=seen[500], events_sent=accepted, **counts)
    assert time.monotonic() - started < 100
