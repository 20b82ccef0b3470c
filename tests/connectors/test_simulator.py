"""Traffic simulator: determinism, predictability of conversion from behaviour, drift, signed delivery."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from standardwebhooks import Webhook

from sandbox import SandboxCRM
from sandbox.simulator import (
    FREE_DOMAINS,
    EventSender,
    FunnelSimulation,
    SandboxCrmFeed,
    SimulatorConfig,
    run,
    simulate,
)

from .conftest import Receiver

SECRET = "whsec_" + "c2ltdWxhdG9yLXRlc3Qtc2VjcmV0LTEyMzQ1Ng=="
SIGNALS = ["page:Pricing", "Demo Requested", "Webinar Attended", "Email Link Clicked", "Session Started",
           "page:Careers", "Whitepaper Downloaded", "page:Case Studies"]


def test_same_seed_same_funnel_other_seed_other_funnel() -> None:
    a, b = simulate(SimulatorConfig(seed=11, accounts=40)), simulate(SimulatorConfig(seed=11, accounts=40))
    assert [a.segment_event(e) for e in a.events] == [b.segment_event(e) for e in b.events]
    assert a.outcomes == b.outcomes and a.contacts == b.contacts
    c = simulate(SimulatorConfig(seed=12, accounts=40))
    assert [e.message_id for e in c.events] != [e.message_id for e in a.events]


def test_funnel_is_realistic() -> None:
    sim = simulate(SimulatorConfig(seed=5, accounts=120))
    emails = [c.email for c in sim.contacts]
    assert len(set(emails)) == len(emails)
    free = sum(e.split("@")[1] in FREE_DOMAINS for e in emails) / len(emails)
    assert 0.1 < free < 0.3
    won = [o for o in sim.outcomes if o.won]
    assert 0.1 < len(won) / len(sim.contacts) < 0.45
    names = {e.name for e in sim.events}
    assert {"Pricing", "Docs", "Careers", "Blog", "Case Studies", "Demo Requested", "Email Opened",
            "Webinar Attended", "Whitepaper Downloaded", "Form Submitted", "identify"} <= names
    for o in sim.outcomes:  # outcomes arrive days after the person appeared
        assert o.at - sim.contact_by_key[o.contact_key].created_at >= timedelta(days=12)
    ev = next(e for e in sim.events if e.type == "page" and not e.identified)
    seg = sim.segment_event(ev)
    assert "userId" not in seg and seg["anonymousId"] and seg["properties"]["url"].startswith("https://")


def test_conversion_is_predictable_from_behaviour() -> None:
    sim = simulate(SimulatorConfig(seed=3, accounts=300))
    X, y = [], []
    for o in sim.outcomes:
        counts = sim.behaviour_counts(o.contact_key, o.at)  # only what happened before the label arrived
        contact = sim.contact_by_key[o.contact_key]
        X.append([counts.get(s, 0) for s in SIGNALS] + [contact.email.split("@")[1] in FREE_DOMAINS])
        y.append(int(o.won))
    X_arr, y_arr = np.log1p(np.array(X, dtype=float)), np.array(y)
    train = np.arange(len(y_arr)) % 2 == 0
    model = LogisticRegression(max_iter=2000).fit(X_arr[train], y_arr[train])
    auc = roc_auc_score(y_arr[~train], model.predict_proba(X_arr[~train])[:, 1])
    assert auc > 0.72, auc


def test_drift_moves_the_signal_from_pricing_to_webinars() -> None:
    cfg = SimulatorConfig(seed=3, accounts=400, days=160, drift_day=80)
    sim = simulate(cfg)
    drift = cfg.start + timedelta(days=80)
    phases: dict[str, list[tuple[int, int, int]]] = {"pre": [], "post": []}
    for o in sim.outcomes:
        contact = sim.contact_by_key[o.contact_key]
        phase = "pre" if o.at < drift else "post" if contact.created_at >= drift else None
        if phase:
            counts = sim.behaviour_counts(o.contact_key, o.at)
            phases[phase].append((int(o.won), counts.get("page:Pricing", 0), counts.get("Webinar Attended", 0)))
    auc = {(p, j): roc_auc_score([r[0] for r in rows], [r[j] for r in rows]) for p, rows in phases.items()
           for j in (1, 2)}
    assert auc[("pre", 1)] > 0.7 and auc[("post", 1)] < 0.6  # pricing views stop predicting
    assert auc[("post", 2)] > auc[("pre", 2)] + 0.05  # webinars start to


def _signal_aucs(sim: FunnelSimulation, cutoff: datetime, signal: str) -> dict[str, float]:
    """ROC AUC of one behaviour count for outcomes before the cutoff and for contacts created after it."""
    phases: dict[str, list[tuple[int, int]]] = {"pre": [], "post": []}
    for o in sim.outcomes:
        contact = sim.contact_by_key[o.contact_key]
        phase = "pre" if o.at < cutoff else "post" if contact.created_at >= cutoff else None
        if phase:
            phases[phase].append((int(o.won), sim.behaviour_counts(o.contact_key, o.at).get(signal, 0)))
    return {p: roc_auc_score([r[0] for r in rows], [r[1] for r in rows]) for p, rows in phases.items()}


def test_gradual_drift_brings_a_segment_whose_intent_shows_in_the_docs() -> None:
    cfg = SimulatorConfig(seed=3, accounts=400, days=160, drift_day=60, drift_kind="gradual")
    sim = simulate(cfg)
    drift = cfg.start + timedelta(days=60)
    assert all(c.segment == "core" for c in sim.contacts if c.created_at < drift)
    late = [c for c in sim.contacts if c.created_at >= drift + timedelta(days=cfg.segment_ramp_days)]
    assert 0.55 < sum(c.segment == "new" for c in late) / len(late) < 0.85
    pricing = _signal_aucs(sim, drift + timedelta(days=cfg.segment_ramp_days), "page:Pricing")
    docs = _signal_aucs(sim, drift + timedelta(days=cfg.segment_ramp_days), "page:Docs")
    assert pricing["post"] < pricing["pre"] - 0.05 and docs["post"] > docs["pre"] + 0.05


def test_seasonal_drift_retargets_the_campaign_audience_to_pricing() -> None:
    cfg = SimulatorConfig(seed=3, accounts=400, days=160, drift_day=80, drift_kind="seasonal")
    sim = simulate(cfg)
    campaign = [c for c in sim.contacts if c.segment == "campaign"]
    assert 0.25 < len(campaign) / len(sim.contacts) < 0.45
    core = [c for c in sim.contacts if c.segment == "core"]
    assert np.mean([c.converts for c in campaign]) < np.mean([c.converts for c in core]) - 0.05
    pricing = _signal_aucs(sim, cfg.start + timedelta(days=80), "page:Pricing")
    assert pricing["pre"] > 0.7 and pricing["post"] < pricing["pre"] - 0.1


def test_drift_kinds_leave_the_default_funnel_alone() -> None:
    plain = simulate(SimulatorConfig(seed=4, accounts=40, days=60))
    control = simulate(SimulatorConfig(seed=4, accounts=40, days=60, drift_kind="seasonal"))  # no drift day
    assert plain.contacts == control.contacts and plain.outcomes == control.outcomes
    assert all(c.segment == "core" for c in plain.contacts)
    with pytest.raises(ValueError, match="drift_kind"):
        simulate(SimulatorConfig(accounts=5, drift_day=10, drift_kind="tidal"))


def test_fast_run_delivers_signed_batches_and_crm_records(sandbox: SandboxCRM, receiver: Receiver) -> None:
    sim = simulate(SimulatorConfig(seed=9, accounts=6, days=60))
    sender = EventSender(receiver.url, SECRET, batch_size=50)
    feed = SandboxCrmFeed(sandbox.base_url, crms=("hubspot", "salesforce"))
    stats = run(sim, sender=sender, crm=feed)
    assert stats.events == len(sim.events) and stats.failed_batches == 0
    got = receiver.wait_for(lambda r: sum(len(json.loads(x.body)["batch"]) for x in r) == len(sim.events))
    wh = Webhook(SECRET)
    delivered = []
    for item in got:
        delivered.extend(wh.verify(item.body, item.headers)["batch"])  # raises if the signature is wrong
    assert [d["messageId"] for d in delivered] == [e.message_id for e in sim.events]
    assert delivered[0]["timestamp"].startswith(sim.events[0].at.strftime("%Y-%m-%dT%H:%M"))
    assert len(sandbox.store.hs_objects["contacts"]) == len(sim.contacts)
    assert len(sandbox.store.sf_records["Lead"]) == len(sim.contacts)
    won = sum(o.won for o in sim.outcomes)
    deals = sandbox.store.hs_objects["deals"].values()
    assert sum(d["properties"]["dealstage"] == "closedwon" for d in deals) == won
    leads = sandbox.store.sf_records["Lead"].values()
    assert sum(1 for r in leads if r["IsConverted"]) == won  # a converted Lead is the win
    assert sum(1 for r in leads if r["Status"] == "Closed - Not Converted") == len(sim.outcomes) - won


def test_realtime_run_paces_events(receiver: Receiver) -> None:
    sim = simulate(SimulatorConfig(seed=9, accounts=3, days=30))
    fake_now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        fake_now[0] += seconds

    stats = run(sim, sender=EventSender(receiver.url, SECRET), realtime_rate=20.0, max_events=40,
                clock=lambda: fake_now[0], sleep=sleep)
    assert stats.events == 40
    assert abs(sum(slept) - 39 / 20.0) < 1e-6  # 40 events at 20/s span 1.95 s of (injected) clock
    got = receiver.wait_for(lambda r: sum(len(json.loads(x.body)["batch"]) for x in r) == 40)
    assert all(len(json.loads(x.body)["batch"]) <= 2 for x in got)  # small batches in real time
