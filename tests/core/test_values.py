"""The validation boundary (core.values): bad values are dropped with a reason, broken entries refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.registry import LEAD_FIELD_TABLES, PROVIDERS
from core.records import Account, Event, Lead
from core.values import (
    INT32_MAX,
    INTEGER_ATTRIBUTES,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_TEXT,
    EntryRefused,
    clean_account,
    clean_count,
    clean_event,
    clean_lead,
    clean_text,
)
from scoring.features import TRAIT_ALIASES

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def event(properties: dict[str, Any] | None = None, **fields: Any) -> Event:
    base: dict[str, Any] = {"source": "s", "crm": "web", "object_type": "person", "object_id": "u1",
                            "event_type": "identify", "occurred_at": NOW, "received_at": NOW,
                            "properties": properties or {}, "email": "ana@acme.io"}
    base.update(fields)
    return Event(**base)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(("value", "reason"), [
    ("a\x00b", "text contains a NUL character"),
    ("\ud800", "text is not valid Unicode (lone surrogate)"),
    ("x" * (MAX_TEXT + 1), f"text longer than {MAX_TEXT} characters"),
    (float("inf"), "number is not finite"),
    (float("nan"), "number is not finite"),
    (2**64, "integer beyond 64 bits"),
    (-(2**64), "integer beyond 64 bits"),
    (nested(MAX_DEPTH + 2), f"nested deeper than {MAX_DEPTH} levels"),
])
def test_a_bad_value_is_dropped_and_the_rest_kept(value: Any, reason: str) -> None:
    cleaned, dropped = clean_event(event({"bad": value, "title": "VP Sales", "n": 5}))
    assert reason in [d.reason for d in dropped]
    assert cleaned.properties["title"] == "VP Sales"
    assert cleaned.properties["n"] == 5
    assert "bad" not in cleaned.properties or cleaned.properties["bad"] != value


@pytest.mark.parametrize("value", ["1e30", "1e999", 10**30, 1e30, -5, "nan", "inf", float("inf"), 2**31, True, [1]])
def test_a_head_count_must_fit_the_column(value: Any) -> None:
    cleaned, dropped = clean_event(event({"employees": value, "traits": {"NumberOfEmployees": value}}))
    assert "employees" not in cleaned.properties
    assert "NumberOfEmployees" not in cleaned.properties["traits"]
    assert {d.field for d in dropped} == {"employees", "traits.NumberOfEmployees"}


@pytest.mark.parametrize("value", [250, "250", "1,000", "51-200", "1000+", 0, INT32_MAX, 250.0])
def test_a_good_head_count_is_kept(value: Any) -> None:
    cleaned, dropped = clean_event(event({"employees": value}))
    assert dropped == []
    assert cleaned.properties["employees"] == value


def test_every_head_count_name_the_code_reads_is_checked() -> None:
    # connectors/<crm>/fields.py, connectors/events.py and scoring/features.py name head-count properties;
    # each must be range-checked here.
    tables = [*LEAD_FIELD_TABLES.values(), *(p.fields.ACCOUNT_FIELDS for p in PROVIDERS.values())]
    names = {n.lower() for table in tables for n in table.get("employees", ())}
    names |= {alias for alias, trait in TRAIT_ALIASES.items() if trait == "employees"}
    assert names <= set(INTEGER_ATTRIBUTES)


def test_a_clean_event_is_returned_as_it_is() -> None:
    original = event({"title": "CTO", "n": 3, "ok": True, "list": [1, "a", {"b": None}]})
    cleaned, dropped = clean_event(original)
    assert cleaned is original
    assert dropped == []


def test_too_many_keys_and_items_are_cut() -> None:
    many = {f"k{i}": i for i in range(MAX_ITEMS + 5)}
    cleaned, dropped = clean_event(event({"obj": many, "arr": list(range(MAX_ITEMS + 5))}))
    assert len(cleaned.properties["obj"]) == MAX_ITEMS
    assert len(cleaned.properties["arr"]) == MAX_ITEMS
    assert len(dropped) == 2


def test_a_bad_property_name_is_dropped() -> None:
    cleaned, dropped = clean_event(event({"a\x00b": 1, "\udfff": 2, "fine": 3}))
    assert cleaned.properties == {"fine": 3}
    assert len(dropped) == 2


def test_a_bad_email_is_dropped_not_the_entry() -> None:
    cleaned, dropped = clean_event(event(email="a\x00@b.com"))
    assert cleaned.email is None
    assert dropped[0].field == "email"


@pytest.mark.parametrize(("fields", "reason"), [
    ({"object_id": ""}, "object id is missing"),
    ({"object_id": "x" * 65}, "object id longer than 64 characters"),
    ({"object_id": "a\x00b"}, "object id contains a NUL character"),
    ({"object_id": "\ud800"}, "object id is not valid Unicode (lone surrogate)"),
    ({"occurred_at": datetime(1999, 12, 31, tzinfo=UTC)}, "timestamp is before 2000-01-01"),
    ({"occurred_at": NOW + timedelta(days=2)}, "timestamp is more than a day in the future"),
    ({"occurred_at": datetime(2026, 1, 1)}, "occurred_at is not an aware date-time"),
    ({"event_type": "explode"}, "unknown event type"),
])
def test_a_broken_entry_is_refused(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(EntryRefused) as info:
        clean_event(event(**fields))
    assert info.value.reason == reason


def test_records_read_from_a_crm_are_storable() -> None:
    lead = clean_lead(Lead(id="1", email="a@b.com", first_name="A\x00", last_name="x" * 500, title="CTO",
                           country="\ud800", crm_ids={"hubspot": "1"}, properties={"n": float("nan"), "ok": 1}))
    assert (lead.first_name, lead.country) == (None, None)
    assert lead.last_name is None  # longer than the column: not text we can store
    assert lead.title == "CTO"
    assert lead.properties == {"ok": 1}
    account = clean_account(Account(id="c", name="Acme", employees="1e30", industry="\x00"))  # type: ignore[arg-type]
    assert account.employees is None and account.industry is None and account.name == "Acme"


@pytest.mark.parametrize(("value", "expected"), [(12, 12), ("12", 12), ("1,200", 1200), (12.7, 12), ("1e30", None),
                                                 (float("inf"), None), (-1, None), (None, None), (True, None),
                                                 ("abc", None)])
def test_clean_count(value: Any, expected: int | None) -> None:
    assert clean_count(value) == expected


def test_clean_text() -> None:
    assert clean_text("ok") == "ok"
    assert clean_text(5) == "5"
    assert clean_text("a\x00") is None
    assert clean_text(float("nan")) is None
    assert clean_text({"a": 1}) is None
