"""Account scores go through the writeback outbox: written once, not rewritten unchanged, retried and set
aside like a lead's (real Redis, the sandbox CRM over HTTP)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select

from connectors.base import TransientConnectorError
from core.records import utcnow
from sandbox import SandboxCRM
from storage.models import Account, Lead, OutboxItem
from tasks.learning import score_accounts_now
from tasks.resources import Resources
from tasks.writeback import ACCOUNTS, INFLIGHT_KEY, LEADS, WRITTEN_KEY, flush_once
from tests.crm_ids import with_ids

UPDATE = "^/crm/v3/objects/companies/batch/update"


def an_account(crm: SandboxCRM, res: Resources, scores: tuple[int, ...] = (70, 20)) -> tuple[int, str]:
    """A company in the sandbox and its account here, with scored contacts; (account id, company id)."""
    res.connector("hubspot").provision_fields()
    company = crm.store.hs_create("companies", {"name": "Initech", "domain": "initech.com"})["id"]
    with res.db.session(write=True) as session:
        account = Account(domain="initech.com", name="Initech", properties={})
        session.add_all(with_ids(account, hubspot=company))
        session.flush()
        for i, score in enumerate(scores):
            session.add(Lead(external_id=f"acct-{i}", account_id=account.id, score=score,
                             probability=score / 100, grade="B", reasons=["+ requested a demo"],
                             scored_at=utcnow() - timedelta(hours=1), properties={}))
        return account.id, company


def score_writes(crm: SandboxCRM, company: str) -> list[dict[str, Any]]:
    writes = requests.get(crm.base_url + "/_sandbox/writes", timeout=5, params={
        "prefix": "leadbridge_score", "crm": "hubspot", "object_id": company}).json()["writes"]
    return [w for w in writes if w["property"] == "leadbridge_score"]  # not leadbridge_scored_at


def test_an_account_score_is_written_once_and_not_rewritten_unchanged(sandbox: SandboxCRM,
                                                                      res: Resources) -> None:
    account_id, company = an_account(sandbox, res)
    counts = score_accounts_now(res, crms=("hubspot",), model_version="m1")
    assert counts == {"scored": 1, "changed": 1, "hubspot": 1, "salesforce": 0}
    props = sandbox.store.hs_get("companies", company)["properties"]
    assert props["leadbridge_model_version"] == "account:m1"
    assert props["leadbridge_tier"] in ("hot", "warm", "cold")
    assert len(score_writes(sandbox, company)) == 1
    # The account's own keys hold its fingerprint; the lead keys (lead ids only) are untouched.
    assert res.redis.hget(ACCOUNTS.written.format(crm="hubspot"), account_id) is not None
    assert not res.redis.exists(WRITTEN_KEY.format(crm="hubspot"), INFLIGHT_KEY.format(crm="hubspot"))
    assert not res.redis.hlen(ACCOUNTS.inflight.format(crm="hubspot"))
    # Marked again with nothing changed: the fingerprint says the CRM shows it already.
    res.redis.sadd(ACCOUNTS.dirty.format(crm="hubspot"), account_id)
    assert flush_once(res, "hubspot", ACCOUNTS) == 0
    assert score_accounts_now(res, crms=("hubspot",), model_version="m1", everything=True)["hubspot"] == 0
    assert len(score_writes(sandbox, company)) == 1


def rescore(res: Resources, account_id: int, score: int) -> None:
    """Store a new account score and mark the account for writing, as score_accounts_now does."""
    with res.db.session(write=True) as session:
        account = session.get(Account, account_id)
        account.score, account.grade, account.reasons = score, "A", ["+ 2 contacts active"]
        account.scored_at = utcnow()
    res.redis.sadd(ACCOUNTS.dirty.format(crm="hubspot"), account_id)


def test_a_failing_account_write_is_retried_then_set_aside(sandbox: SandboxCRM, res: Resources) -> None:
    account_id, company = an_account(sandbox, res)
    dirty, aside = ACCOUNTS.dirty.format(crm="hubspot"), ACCOUNTS.aside.format(crm="hubspot")
    rescore(res, account_id, 80)
    sandbox.faults.add({"route": UPDATE, "kind": "status", "status": 503, "count": 1})
    with pytest.raises(TransientConnectorError):
        flush_once(res, "hubspot", ACCOUNTS)
    # A transient failure puts it back: marked again, nothing left in flight; the next flush writes it.
    assert res.redis.sismember(dirty, account_id)
    assert not res.redis.hlen(ACCOUNTS.inflight.format(crm="hubspot"))
    assert score_writes(sandbox, company) == []
    assert flush_once(res, "hubspot", ACCOUNTS) == 1
    assert sandbox.store.hs_get("companies", company)["properties"]["leadbridge_score"] == "80"

    # A refusal sets the values aside (fingerprint, dead outbox row), like a lead's.
    rescore(res, account_id, 81)
    sandbox.faults.add({"route": UPDATE, "kind": "status", "status": 400, "count": 1})
    assert flush_once(res, "hubspot", ACCOUNTS) == 0
    assert res.redis.hget(aside, account_id) is not None and not res.redis.scard(dirty)
    with res.db.session() as session:
        dead = session.scalars(select(OutboxItem).where(OutboxItem.status == "dead")).one()
    assert (dead.object_type, dead.object_id, dead.lead_id) == ("account", company, None)
    # The same values are not sent again; new values are, and clear the set-aside mark.
    res.redis.sadd(dirty, account_id)
    assert flush_once(res, "hubspot", ACCOUNTS) == 0
    assert len(score_writes(sandbox, company)) == 1
    rescore(res, account_id, 82)
    assert flush_once(res, "hubspot", ACCOUNTS) == 1
    assert res.redis.hget(aside, account_id) is None
    lead_keys = (LEADS.dirty, LEADS.written, LEADS.aside)
    assert not res.redis.exists(*(key.format(crm="hubspot") for key in lead_keys))
