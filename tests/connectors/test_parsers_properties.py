"""Property-based tests: no input makes a parser raise anything but MalformedPayload.

Arbitrary bytes, arbitrary JSON, and the fixtures mutated at random (fields deleted, values swapped for
values of other types, XML elements dropped or rewritten, bodies truncated) must all come back as a
ParseResult or a MalformedPayload, and every event that comes back must be a sound canonical Event.
"""

from __future__ import annotations

import copy
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.events import parse_events
from connectors.hubspot.webhook import parse_hubspot
from connectors.parsing import MalformedPayload, ParseResult
from connectors.salesforce.webhook import (
    fault_response,
    parse_salesforce_json,
    parse_salesforce_outbound,
)
from core.records import EVENT_TYPES, Event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECEIVED = datetime(2024, 6, 3, 16, 5, tzinfo=UTC)
# LEADBRIDGE_FUZZ_SCALE=20 makes a deeper (slower) run; the default keeps the suite well under 30 s.
SCALE = max(1, int(os.environ.get("LEADBRIDGE_FUZZ_SCALE", "1")))
FAST = settings(max_examples=50 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MUTATIONS = settings(FAST, max_examples=120 * SCALE)

PARSERS: dict[str, Callable[[bytes], ParseResult]] = {
    "hubspot": lambda body: parse_hubspot(body, source="s", received_at=RECEIVED, portal_id=62515),
    "salesforce_outbound": lambda body: parse_salesforce_outbound(
        body, source="s", received_at=RECEIVED, org_id="00D5g000004ABCDEA2"
    ),
    "salesforce_json": lambda body: parse_salesforce_json(
        body, source="s", received_at=RECEIVED, org_id="00D5g000004ABCDEA2"
    ),
    "events": lambda body: parse_events(body, source="s", received_at=RECEIVED),
}
JSON_FIXTURES = [
    ("hubspot", "hubspot/batch_documented.json"),
    ("hubspot", "hubspot/generic_object_batch.json"),
    ("hubspot", "hubspot/association_both_sides.json"),
    ("salesforce_json", "salesforce/flow_batch.json"),
    ("salesforce_json", "salesforce/cdc_lead_update.json"),
    ("salesforce_json", "salesforce/platform_event.json"),
    ("salesforce_json", "salesforce/platform_event_data_only.json"),
    ("events", "events/batch.json"),
    ("events", "events/page_single.json"),
]
XML_FIXTURES = ["salesforce/outbound_lead.xml", "salesforce/outbound_mixed.xml"]


def run(parser: str, body: bytes) -> ParseResult | None:
    """Parse and check every invariant; None when the body was (correctly) refused as malformed."""
    try:
        result = PARSERS[parser](body)
    except MalformedPayload as exc:
        assert exc.code and str(exc)
        return None
    assert isinstance(result, ParseResult)
    for event in result.events:
        check_event(event)
    reported = [i for i, _ in result.invalid] + [i for i, _ in result.ignored]
    assert all(isinstance(i, int) and i >= 0 for i in reported)
    for _, reason in result.invalid:
        # "could not be parsed" is the safety net for a bug in a parser; it must never be reached.
        assert not reason.startswith("could not be parsed"), reason
    json.dumps(result.summary())
    return result


def check_event(event: Event) -> None:
    assert event.event_type in EVENT_TYPES
    assert event.crm in ("hubspot", "salesforce", "web")
    assert isinstance(event.object_id, str) and event.object_id
    assert isinstance(event.object_type, str) and event.object_type
    assert len(event.dedupe_key) == 64 and int(event.dedupe_key, 16) >= 0
    assert event.occurred_at.tzinfo is not None and event.received_at == RECEIVED
    assert event.email is None or (isinstance(event.email, str) and "@" in event.email)
    json.dumps(dict(event.properties), allow_nan=False)  # storable as JSON as it is


# --- strategies ----------------------------------------------------------------------------------------

NASTY = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        2**63,
        10**30,
        1.5,
        1e308,
        "",
        " ",
        "x" * 300,
        "0-1",
        "0-9",
        "contact.creation",
        "object.propertyChange",
        "GAP_UPDATE",
        "00Q5g00000ABCDEAA1",
        "001*",
        "2024-06-03T16:00:00Z",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
        "1717430400",
        "1717430400000",
        [],
        {},
        [None],
        {"": {}},
    ]
)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
JSON_VALUES = st.recursive(
    SCALARS | NASTY,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def json_paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from json_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from json_paths(child, (*prefix, index))


EXTREME_INTS = st.sampled_from([-1, 0, 2**31, 2**63, -(2**63), 10**30, 946684799999, 253402300800000])
ODD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "x" * 300,
        "\x00",
        "é",
        "0-1",
        "0-9",
        "1717430400",
        "1e3",
        "2024-13-45T99:99:99Z",
        "not a date",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "http://[::1/x",
        "ptth://",
        "sf:",
        "@",
        "a@b",
    ]
)


def replacement(current: Any) -> st.SearchStrategy[Any]:
    """A value that keeps the field's type but is extreme, or one of another type altogether."""
    if isinstance(current, bool):
        same = st.booleans()
    elif isinstance(current, int):
        same = EXTREME_INTS | st.integers()
    elif isinstance(current, float):
        same = st.floats(allow_nan=False, allow_infinity=False)
    elif isinstance(current, str):
        same = ODD_STRINGS | st.text(max_size=20)
    elif isinstance(current, list):
        same = st.lists(JSON_VALUES, max_size=3)
    else:
        same = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)
    return same | JSON_VALUES


@st.composite
def mutated_json(draw: st.DrawFn, base: Any) -> Any:
    """The base document with 1-4 random deletions or replacements, mostly of leaf values.

    A list document is first cut down to one random entry, so that each mutation has a fair chance of
    hitting a field that matters (ids, timestamps, types) instead of being spread over a whole batch.
    """
    doc = copy.deepcopy(base)
    if isinstance(doc, list) and doc and draw(st.booleans()):
        doc = [doc[draw(st.integers(0, len(doc) - 1))]]
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in json_paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.integers(0, 3)) == 0:
            del parent[path[-1]]
        else:
            # deepcopy: NASTY hands out the same list/dict objects each time, and later steps mutate in place
            parent[path[-1]] = copy.deepcopy(draw(replacement(parent[path[-1]])))
    return doc


@st.composite
def mutated_xml(draw: st.DrawFn, base: bytes) -> bytes:
    """The base envelope with elements dropped, texts and attributes rewritten, then maybe cut short."""
    root = ET.fromstring(base)
    for _ in range(draw(st.integers(1, 5))):
        elements = list(root.iter())
        target = draw(st.sampled_from(elements))
        action = draw(st.sampled_from(["drop", "text", "attr", "copy"]))
        if action == "drop" and target is not root:
            parent = next(e for e in root.iter() if target in list(e))
            parent.remove(target)
        elif action == "text":
            target.text = draw(st.text(max_size=30) | NASTY.filter(lambda v: isinstance(v, str)))
        elif action == "attr":
            target.set(
                "{http://www.w3.org/2001/XMLSchema-instance}" + draw(st.sampled_from(["type", "nil"])),
                draw(st.sampled_from(["sf:Lead", "sf:Case", "Lead", ":", "", "true", "sf:", "a:b:c"])),
            )
        elif action == "copy" and target is not root:
            parent = next(e for e in root.iter() if target in list(e))
            parent.append(copy.deepcopy(target))
    body = ET.tostring(root, encoding="utf-8")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=8))
    return body


# --- the properties ------------------------------------------------------------------------------------


@pytest.mark.parametrize("parser", sorted(PARSERS))
@FAST
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes(parser: str, body: bytes):
    run(parser, body)


@pytest.mark.parametrize("parser", sorted(PARSERS))
@FAST
@given(value=JSON_VALUES)
def test_arbitrary_json(parser: str, value: Any):
    run(parser, json.dumps(value).encode())


@pytest.mark.parametrize("parser", sorted(PARSERS))
@FAST
@given(items=st.lists(JSON_VALUES, max_size=5))
def test_arbitrary_json_batches(parser: str, items: list[Any]):
    for body in ({"batch": items}, {"events": items}, items):
        run(parser, json.dumps(body).encode())


@pytest.mark.parametrize("parser, fixture", JSON_FIXTURES, ids=[f for _, f in JSON_FIXTURES])
@MUTATIONS
@given(data=st.data())
def test_mutated_json_fixtures(parser: str, fixture: str, data: st.DataObject):
    base = json.loads((FIXTURES / fixture).read_text())
    run(parser, json.dumps(data.draw(mutated_json(base))).encode())


@pytest.mark.parametrize("fixture", XML_FIXTURES)
@MUTATIONS
@given(data=st.data())
def test_mutated_outbound_messages(fixture: str, data: st.DataObject):
    base = (FIXTURES / fixture).read_bytes()
    run("salesforce_outbound", data.draw(mutated_xml(base)))


@pytest.mark.parametrize("parser, fixture", JSON_FIXTURES, ids=[f for _, f in JSON_FIXTURES])
def test_unmutated_fixtures_parse_cleanly(parser: str, fixture: str):
    result = run(parser, (FIXTURES / fixture).read_bytes())
    assert result is not None and result.events and result.invalid == []


@FAST
@given(message=st.text(max_size=300), code=st.sampled_from(["Server", "Client"]))
def test_fault_is_always_well_formed_xml(message: str, code: str):
    fault = ET.fromstring(fault_response(message, code=code)).find(
        ".//{http://schemas.xmlsoap.org/soap/envelope/}Fault"
    )
    assert fault.findtext("faultcode") == f"soapenv:{code}"
    assert len(fault.findtext("faultstring") or "") <= 200
