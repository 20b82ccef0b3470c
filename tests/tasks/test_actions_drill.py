"""The drill of issue 16: HubSpot refuses task creation with 403 (a missing scope) for a minute. Scores keep flowing
into the CRM fields, the task action waits and retries (the deliveries say why), and once the scope is back the
task lands exactly once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from core.keys import DIRTY_KEY
from services.deliveries import list_outbox
from storage.models import Lead
from tasks.names import WRITEBACK_TASK
from tests.processes import wait_for
from tests.tasks.test_actions import TASK, ActionWorld, action_world  # noqa: F401 - the fixture

REFUSED_FOR = 60.0


@pytest.mark.slow
def test_a_minute_of_403_on_tasks_holds_only_the_task(action_world: ActionWorld) -> None:  # noqa: F811
    w = action_world
    w.rule([TASK, {"kind": "slack_channel"}])
    lead = w.contact("ana@acme.example")
    w.fault(route="^/crm/v3/objects/tasks$", method="POST", status=403, seconds=REFUSED_FOR)
    started = time.monotonic()
    assert w.cross(lead) == 2

    # The task waits, and the deliveries (what the page and GET /api/deliveries/outbox show) say why.
    def waiting() -> str | None:
        with w.db.session() as session:
            rows = list_outbox(session, target="hubspot").rows
            return rows[0].error if rows and rows[0].status == "pending" else None

    wait_for(lambda: (waiting() or "").startswith("waiting: HubSpot refused (HTTP 403)"), 30, "the task waiting")
    assert "scopes" in (waiting() or "")
    assert len(w.channel_posts()) == 1  # the other action of the crossing did not wait for it

    # Scores keep flowing into the CRM fields meanwhile.
    contact_id = w.rows()[0].object_id
    for score in (91, 93):
        with w.db.session() as session:
            session.execute(update(Lead).where(Lead.id == lead).values(score=score))
        w.res.redis.sadd(DIRTY_KEY.format(crm="hubspot"), lead)
        w.celery.send_task(WRITEBACK_TASK, args=["hubspot"])
        wait_for(lambda s=score: w.sandbox.store.hs_get("contacts", contact_id)["properties"].get("leadbridge_score")
                 == str(s), 30, f"score {score} written while tasks are refused")
    assert time.monotonic() - started < REFUSED_FOR
    assert w.tasks() == []

    # The scope comes back: the task lands, once.
    rows = w.settled(2, timeout=REFUSED_FOR + 60)
    task = next(r for r in rows if r.payload["action"]["kind"] == "crm_task")
    assert task.status == "sent" and task.error is None
    assert task.payload["waits"] >= 2 and "HTTP 403" in task.payload["last_wait"]
    assert time.monotonic() - started >= REFUSED_FOR
    assert len(w.tasks()) == 1
