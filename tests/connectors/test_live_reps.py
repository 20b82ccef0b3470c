"""The sandbox demo's reps (sandbox.live_reps): a contact whose leadbridge score shows hot gets its owner's call
within the alert delay, the rest from the queue after theirs, each call once, logged by the rep's own user, so
the connector's read_activity counts it as a touch."""

from __future__ import annotations

import time

from connectors.hubspot.client import HubSpotConnector
from sandbox import DEFAULT_HUBSPOT_APP_USER_ID, DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from sandbox.live_reps import LiveRepConfig, LiveReps


def test_reps_call_hot_scored_contacts_first_and_the_queue_later(sandbox: SandboxCRM) -> None:
    connector = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url,
                                 integration_user_id=str(DEFAULT_HUBSPOT_APP_USER_ID))
    connector.provision_fields(create=True)
    now = time.time()
    store = sandbox.store
    queued = store.hs_create("contacts", {"email": "old@acme.io"}, created_at=now - 3600)["id"]
    hot = store.hs_create("contacts", {"email": "hot@acme.io", "leadbridge_score": "91"}, created_at=now)["id"]
    fresh = store.hs_create("contacts", {"email": "new@acme.io", "leadbridge_score": "40"}, created_at=now)["id"]
    reps = LiveReps(sandbox.base_url, LiveRepConfig(alert_seconds=10.0, queue_minutes=10.0, spread=0.1))

    assert reps.tick(now) == 1  # the queue reached the hour-old contact; the hot one waits for its alert delay
    assert reps.tick(now + 30) == 1  # the hot contact's call
    assert reps.tick(now + 60) == 0 and reps.touched == {queued, hot}  # once each; the fresh one is still queued

    activity = connector.read_activity([queued, hot, fresh])
    for cid in (queued, hot):
        [touch] = activity[cid].touches
        assert touch.kind == "call" and not touch.by_integration
        assert touch.owner_id == str(3_000_000 + int(cid) % 6)
    assert abs(activity[hot].touches[0].at.timestamp() - (now + 30)) < 1
    assert fresh not in activity or not activity[fresh].touches
