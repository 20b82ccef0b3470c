"""The writeback reconciler: a score stored while its dirty mark was lost still reaches the CRM (drill b's finding)."""

from __future__ import annotations

from datetime import timedelta

import orjson
from sqlalchemy import select, update

from sandbox import SandboxCRM
from core.keys import DIRTY_KEY, INFLIGHT_KEY, WRITTEN_KEY
from core.records import utcnow
from storage.models import Lead
from tasks.resources import Resources
from tasks.writeback import flush_once, reconcile_writes
from tests.crm_ids import has_id, with_ids


def shown_score(crm: SandboxCRM, contact_id: str) -> str | None:
    return crm.store.hs_get("contacts", contact_id)["properties"].get("leadbridge_score")


def test_a_score_whose_mark_was_lost_is_found_and_written_once(sandbox: SandboxCRM, res: Resources) -> None:
    res.connector("hubspot").provision_fields()
    contacts = [sandbox.store.hs_create("contacts", {"email": f"r{i}@acme.io"}, source="CRM_UI")["id"]
                for i in range(3)]
    scored = utcnow() - timedelta(minutes=2)
    with res.db.session(write=True) as session:
        for i, contact_id in enumerate(contacts):
            session.add_all(with_ids(Lead(email=f"r{i}@acme.io", score=20 + i, grade="D",
                                          reasons=["+ visited pricing"], model_version="rules:v1", scored_at=scored),
                                     hubspot=contact_id))
    with res.db.session() as session:
        ids = list(session.scalars(select(Lead.id).where(has_id("hubspot", *contacts)).order_by(Lead.id)))

    # Never written and no fingerprint (their dirty marks lost): the reconciler reads the CRM back, sees
    # nothing of ours there, and re-marks them; one flush writes them.
    window, settled = timedelta(minutes=15), timedelta(seconds=30)
    assert reconcile_writes(res, "hubspot", settled=settled, window=window) == ids
    assert flush_once(res, "hubspot") == 3
    assert [shown_score(sandbox, c) for c in contacts] == ["20", "21", "22"]

    # The CRM now shows what the database holds: nothing to do, nothing written twice.
    for key in res.redis.scan_iter("lb:reconciled:*"):
        res.redis.delete(key)
    assert reconcile_writes(res, "hubspot", settled=settled, window=window) == []
    assert not res.redis.scard(DIRTY_KEY.format(crm="hubspot"))

    # A new score committed as Redis lost its mark (the drill's lead 177): only that lead is re-marked.
    with res.db.session(write=True) as session:
        session.execute(update(Lead).where(Lead.id == ids[1]).values(score=30, grade="C", scored_at=scored))
    assert reconcile_writes(res, "hubspot", settled=settled, window=window) == [ids[1]]
    writes_before = len(sandbox.requests.query(family="hubspot", path="batch/update"))
    assert flush_once(res, "hubspot") == 1
    assert [shown_score(sandbox, c) for c in contacts] == ["20", "30", "22"]
    assert len(sandbox.requests.query(family="hubspot", path="batch/update")) == writes_before + 1

    # Scores still settling (younger than `settled`) are left to the normal path; old ones are out of the window.
    with res.db.session(write=True) as session:
        session.execute(update(Lead).where(Lead.id == ids[0]).values(score=40, scored_at=utcnow()))
        session.execute(update(Lead).where(Lead.id == ids[2]).values(score=50, scored_at=utcnow() - timedelta(hours=1)))
    assert reconcile_writes(res, "hubspot", settled=settled, window=window) == []
    assert res.redis.hget(WRITTEN_KEY.format(crm="hubspot"), ids[0]) is not None


def test_a_write_the_crm_took_but_nobody_recorded_is_read_back_not_repeated(sandbox: SandboxCRM,
                                                                           res: Resources) -> None:
    """Drill a's case: a flush killed between the CRM's answer and recording it leaves in-flight entries."""
    res.connector("hubspot").provision_fields()
    contacts = [sandbox.store.hs_create("contacts", {"email": f"k{i}@acme.io"}, source="CRM_UI")["id"]
                for i in range(3)]
    with res.db.session(write=True) as session:
        for i, contact_id in enumerate(contacts):
            session.add_all(with_ids(Lead(email=f"k{i}@acme.io", score=60 + i, grade="B",
                                          reasons=["+ requested a demo"], model_version="rules:v1", scored_at=utcnow()),
                                     hubspot=contact_id))
    with res.db.session() as session:
        ids = list(session.scalars(select(Lead.id).where(has_id("hubspot", *contacts)).order_by(Lead.id)))
    res.redis.sadd(DIRTY_KEY.format(crm="hubspot"), *ids)
    assert flush_once(res, "hubspot") == 3
    fingerprints = res.redis.hgetall(WRITTEN_KEY.format(crm="hubspot"))
    assert not res.redis.exists(INFLIGHT_KEY.format(crm="hubspot"))  # a recorded batch leaves nothing in flight

    # Rewind to the instant after the CRM took the batch: in-flight entries, no fingerprints. Contact 2 is
    # then changed by someone else, so the CRM no longer shows what we sent there.
    inflight = {lead_id: orjson.dumps({"crm_id": contact_id, "fp": fingerprints[str(lead_id).encode()].decode(),
                                       "values": {"score": 60 + i, "grade": "B", "reasons": ["+ requested a demo"],
                                                  "tier": "warm", "model_version": "rules:v1"}})
                for i, (lead_id, contact_id) in enumerate(zip(ids, contacts))}
    res.redis.delete(WRITTEN_KEY.format(crm="hubspot"))
    res.redis.hset(INFLIGHT_KEY.format(crm="hubspot"), mapping=inflight)
    sandbox.store.hs_update("contacts", contacts[2], {"leadbridge_score": "1"}, source="CRM_UI")
    writes_before = len(sandbox.requests.query(family="hubspot", path="batch/update"))

    assert flush_once(res, "hubspot") == 1  # the next flush settles them first: two landed, one written again
    assert [shown_score(sandbox, c) for c in contacts] == ["60", "61", "62"]
    assert len(sandbox.requests.query(family="hubspot", path="batch/update")) == writes_before + 1
    assert not res.redis.exists(INFLIGHT_KEY.format(crm="hubspot"))
    assert set(res.redis.hgetall(WRITTEN_KEY.format(crm="hubspot"))) == {str(i).encode() for i in ids}
    assert not res.redis.scard(DIRTY_KEY.format(crm="hubspot"))
