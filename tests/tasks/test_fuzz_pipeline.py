"""Property-based fuzz: 10,000 correctly signed bodies across every endpoint, with a real worker running.

Bodies are vendor-shaped entries whose fields are replaced by arbitrary JSON (any Unicode including lone
surrogates and NUL, integers beyond 64 bits, non-finite numbers, nesting) or by arbitrary bytes. The
properties: no answer is a 5xx; the worker processes every acknowledged entry (nothing left pending, no row
or lead dead-lettered by ingest or scoring); stall detection reports no stalled part.
"""

from __future__ import annotations

import math
import os
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.pipeline import pipeline_health
from storage.models import DeadLetter
from tests.hostile import (
    HOSTILE_VALUES,
    INF,
    NEG_INF,
    flow_entry,
    hubspot_event,
    notification,
    outbound_message,
    raw_json,
    segment_identify,
)
from tests.tasks.conftest import SALESFORCE_ORG, LivePipeline
from tests.tasks.test_hostile_input import assert_clear_answer

EXAMPLES = int(os.environ.get("LEADBRIDGE_FUZZ_EXAMPLES", "10000"))

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(st.characters(codec=None), max_size=40)
           | st.sampled_from([v for v in HOSTILE_VALUES if not isinstance(v, (dict, list))]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(st.characters(codec=None), max_size=12), inner, max_size=4),
                           max_leaves=12)
ENDPOINTS = ("hubspot", "events", "salesforce_json", "salesforce_soap", "bytes")


def finite(value: Any) -> Any:
    """Non-finite floats as the placeholders raw_json writes as 1e999 (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return NEG_INF if value < 0 else INF
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def with_replacements(entry: dict[str, Any], replacements: dict[str, Any]) -> dict[str, Any]:
    """The entry with some of its fields (by position) replaced or added."""
    keys = list(entry)
    out = dict(entry)
    for n, (key, value) in enumerate(replacements.items()):
        out[keys[n % len(keys)] if n % 2 == 0 else key] = value
    return out


@st.composite
def delivery(draw: st.DrawFn) -> tuple[str, bytes]:
    """One endpoint and a body for it."""
    kind = draw(st.sampled_from(ENDPOINTS))
    count = draw(st.integers(1, 4))
    swaps = [draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)) for _ in range(count)]
    if kind == "hubspot":
        entries = [with_replacements(hubspot_event(objectId=draw(st.integers(1, 400))), finite(s)) for s in swaps]
        return kind, raw_json(entries)
    if kind == "events":
        traits = finite(draw(st.dictionaries(st.sampled_from(["email", "employees", "title", "industry", "country",
                                                              "company", "x"]), json_values, max_size=5)))
        entries = [with_replacements(segment_identify(f"fz-{draw(st.integers(1, 300))}", traits), finite(s))
                   for s in swaps]
        return kind, raw_json({"batch": entries})
    if kind == "salesforce_json":
        fields = finite(draw(st.dictionaries(st.sampled_from(["Email", "NumberOfEmployees", "Title", "Company",
                                                              "Industry", "Status"]), json_values, max_size=5)))
        entries = [with_replacements(flow_entry(f"00Q5g00000FZ{draw(st.integers(0, 999)):04d}AA", fields), finite(s))
                   for s in swaps]
        return kind, raw_json(entries)
    if kind == "salesforce_soap":
        values = draw(st.lists(st.text(st.characters(codec=None), max_size=30), min_size=1, max_size=4))
        fields = {name: escape(value) for name, value in zip(("Title", "NumberOfEmployees", "Company", "Email"),
                                                               values)}
        return kind, outbound_message([notification("00Q5g00000SOAPFZZA", fields)], SALESFORCE_ORG)
    return draw(st.sampled_from(("hubspot", "salesforce_json", "salesforce_soap"))), draw(st.binary(max_size=300))


@pytest.mark.slow
def test_ten_thousand_signed_bodies_never_5xx_and_never_stall(live_pipeline: LivePipeline) -> None:
    p = live_pipeline
    answered: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(delivery())
    def post(case: tuple[str, bytes]) -> None:
        kind, body = case
        if kind == "hubspot":
            response = p.signer.hubspot(p.hubspot, body)
        elif kind == "events":
            response = p.signer.events(p.events, body)
        elif kind == "salesforce_json":
            response = p.signer.salesforce_json(p.salesforce, body)
        else:
            response = p.signer.salesforce_soap(p.salesforce, body)
        assert_clear_answer(response, soap=kind == "salesforce_soap")
        answered[response.status_code] = answered.get(response.status_code, 0) + 1

    post()
    assert sum(answered.values()) >= EXAMPLES
    assert not [code for code in answered if code >= 500], answered
    assert answered.get(202, 0) > EXAMPLES // 20, answered  # plenty of the bodies carried good entries

    p.settled(300)
    assert p.unfinished() == {}, "an acknowledged entry was not processed"
    with p.db.session() as session:
        failed = [(d.stage, d.error) for d in session.scalars(select(DeadLetter).where(DeadLetter.stage != "writeback"))]
        health = pipeline_health(session, p.redis, stall_after=120.0, crms=("hubspot",))
    assert failed == [], failed[:5]
    assert health.stalled == [], health.summary()
    print(f"fuzz: {sum(answered.values())} bodies, answers {dict(sorted(answered.items()))}")
