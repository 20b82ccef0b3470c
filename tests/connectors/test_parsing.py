"""Unit tests for the helpers every parser shares (connectors.parsing.common)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from connectors.parsing.common import (
    BatchBuilder,
    EventIgnored,
    EventInvalid,
    check_occurred_at,
    iso_to_datetime,
    load_json,
    ms_to_datetime,
    normalize_email,
    stable_hash,
)
from connectors.parsing.errors import MalformedPayload
from core.records import Event

RECEIVED = datetime(2024, 6, 3, 16, 5, tzinfo=UTC)


def test_stable_hash_is_order_and_type_sensitive_but_repeatable():
    assert stable_hash("a", 1, None) == stable_hash("a", 1, None)
    assert stable_hash("a", 1) != stable_hash(1, "a")
    assert stable_hash("1") != stable_hash(1)
    assert stable_hash({"b": 1, "a": 2}) == stable_hash({"a": 2, "b": 1})  # dict key order does not matter
    assert len(stable_hash()) == 64


@pytest.mark.parametrize(
    "value, expected",
    [
        (1717430400000, datetime(2024, 6, 3, 16, 0, tzinfo=UTC)),
        (1717430400123, datetime(2024, 6, 3, 16, 0, 0, 123000, tzinfo=UTC)),
        ("1717430400000", datetime(2024, 6, 3, 16, 0, tzinfo=UTC)),
        (1717430400000.0, datetime(2024, 6, 3, 16, 0, tzinfo=UTC)),
    ],
)
def test_ms_to_datetime(value, expected):
    assert ms_to_datetime(value, "t") == expected


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "t must be epoch milliseconds"),
        (True, "t must be epoch milliseconds"),
        ("12a", "t must be epoch milliseconds"),
        ("١٢٣", "t must be epoch milliseconds"),  # non-ASCII digits that int() would accept
        (1.5, "t must be whole epoch milliseconds"),
        (float("inf"), "t must be whole epoch milliseconds"),
        (-1, "t is out of range"),
        (2**80, "t is out of range"),
        (1717430400, "t looks like epoch seconds; expected milliseconds"),
    ],
)
def test_ms_to_datetime_rejects(value, reason):
    with pytest.raises(EventInvalid) as excinfo:
        ms_to_datetime(value, "t")
    assert excinfo.value.reason == reason


def test_iso_to_datetime_forms():
    assert iso_to_datetime("2024-06-03T16:00:00.000Z", "t") == datetime(2024, 6, 3, 16, tzinfo=UTC)
    assert iso_to_datetime("2024-06-03T18:00:00+02:00", "t") == datetime(2024, 6, 3, 16, tzinfo=UTC)
    assert iso_to_datetime("2024-06-03T16:00:00", "t") == datetime(2024, 6, 3, 16, tzinfo=UTC)
    assert iso_to_datetime("2024-06-03", "t") == datetime(2024, 6, 3, tzinfo=UTC)
    assert iso_to_datetime("2024-06-03T16:00:00Z", "t").tzinfo in (UTC, UTC)


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "t must be an ISO-8601 date-time string"),
        (1717430400000, "t must be an ISO-8601 date-time string"),
        ("", "t must be an ISO-8601 date-time string"),
        ("x" * 65, "t must be an ISO-8601 date-time string"),
        ("June 3rd", "t is not an ISO-8601 date-time"),
        ("0001-01-01T00:00:00+01:00", "t is out of range"),
        ("9999-12-31T23:59:59-01:00", "t is out of range"),
    ],
)
def test_iso_to_datetime_rejects(value, reason):
    with pytest.raises(EventInvalid) as excinfo:
        iso_to_datetime(value, "t")
    assert excinfo.value.reason == reason


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Ana@Acme.io", "ana@acme.io"),
        ("  ana@acme.io\n", "ana@acme.io"),
        ("ana@acme", None),
        ("ana@@acme.io", None),
        ("@acme.io", None),
        ("ana lopez@acme.io", None),
        ("ana@.acme.io", None),
        ("", None),
        (None, None),
        (42, None),
        ("a@" + "b" * 320 + ".io", None),
    ],
)
def test_normalize_email(value, expected):
    assert normalize_email(value) == expected


def test_load_json_names_the_position_not_the_payload():
    with pytest.raises(MalformedPayload) as excinfo:
        load_json(b'{"email": "secret@acme.io",}')
    assert "position" in str(excinfo.value) and "secret" not in str(excinfo.value)


def _event(key: str) -> Event:
    return Event(
        source="s",
        crm="web",
        object_type="person",
        object_id="u",
        event_type="identify",
        occurred_at=RECEIVED,
        received_at=RECEIVED,
        dedupe_key=key,
    )


def test_batch_builder_collects_and_dedupes():
    batch = BatchBuilder("s")
    batch.run(0, lambda: [_event("a")])
    batch.run(1, lambda: [_event("a")])

    def broken():
        raise EventInvalid("bad thing")

    def skipped():
        raise EventIgnored("not ours")

    batch.run(2, broken)
    batch.run(3, skipped)
    assert [e.dedupe_key for e in batch.result.events] == ["a"]
    assert batch.result.invalid == [(2, "bad thing")]
    assert batch.result.ignored == [(1, "duplicate of entry 0 in this batch"), (3, "not ours")]


def test_batch_builder_contains_a_parser_bug_without_logging_payload(caplog: pytest.LogCaptureFixture):
    def buggy():
        {"email": "ana@acme.io"}["missing-key-ana@acme.io"]

    batch = BatchBuilder("hubspot-main")
    with caplog.at_level(logging.ERROR, logger="connectors.parsing.common"):
        batch.run(4, buggy)
    assert batch.result.invalid == [(4, "could not be parsed (KeyError)")]
    (record,) = caplog.records
    assert record.getMessage() == "webhook.parse.unexpected_error"
    assert (record.source, record.index, record.error_type) == ("hubspot-main", 4, "KeyError")
    assert record.at.startswith("test_parsing.py:")
    assert record.exc_info is None and "ana@" not in caplog.text


def test_received_at_window_helper_allows_a_day_of_skew():
    assert check_occurred_at(RECEIVED + timedelta(hours=23), RECEIVED, "t") == RECEIVED + timedelta(hours=23)
    with pytest.raises(EventInvalid):
        check_occurred_at(RECEIVED + timedelta(hours=25), RECEIVED, "t")
