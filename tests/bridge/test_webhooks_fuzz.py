"""Property-based: arbitrary bytes and mutated payloads, correctly signed, never produce a 5xx."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bridge.conftest import Signer, fixture_bytes

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutate(value: Any, rnd: random.Random) -> Any:
    """Randomly delete keys, change types and replace values, recursively."""
    replacements = [None, "", "x", -1, 0, 2**70, 1.5, True, [], {}, "9" * 30, "2024-13-45T99:99:99Z"]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            roll = rnd.random()
            if roll < 0.15:
                continue
            out[key] = rnd.choice(replacements) if roll < 0.35 else mutate(item, rnd)
        return out
    if isinstance(value, list):
        return [mutate(item, rnd) for item in value if rnd.random() > 0.1]
    return value if rnd.random() < 0.7 else rnd.choice(replacements)


@FUZZ
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_never_5xx(webhook_app, make_source, body: bytes) -> None:  # type: ignore[no-untyped-def]
    signer = Signer(webhook_app.test_client())
    hubspot = make_source("hubspot")
    events = make_source("events")
    salesforce = make_source("salesforce", org_id="00D5g000004ABCDEA2")
    for response in (
        signer.hubspot(hubspot, body),
        signer.events(events, body) if _utf8(body) else None,
        signer.salesforce_soap(salesforce, body),
        signer.salesforce_json(salesforce, body),
    ):
        if response is not None:
            assert response.status_code < 500, response.get_data(as_text=True)
            assert response.status_code in (200, 202) or response.status_code >= 400


@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_payloads_never_5xx(webhook_app, make_source, seed: int) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    signer = Signer(webhook_app.test_client())
    hubspot = make_source("hubspot")
    events = make_source("events")
    hs_body = json.dumps(mutate(json.loads(fixture_bytes("hubspot/batch_documented.json")), rnd)).encode()
    ev_body = json.dumps(mutate(json.loads(fixture_bytes("events/batch.json")), rnd)).encode()
    for response in (signer.hubspot(hubspot, hs_body), signer.events(events, ev_body)):
        assert response.status_code < 500, response.get_data(as_text=True)
        assert response.is_json


def _utf8(body: bytes) -> bool:
    # Standard Webhooks signs text; a body that is not UTF-8 cannot be signed by a real sender.
    try:
        body.decode()
        return True
    except UnicodeDecodeError:
        return False
