"""The sandbox CRM's records: HubSpot objects and Salesforce sObjects, thread-safe, optionally saved to JSON.

Both the HTTP routes and in-process callers (the traffic simulator, tests, benchmarks) change records through
the same methods, so every change is validated the same way, logged as property writes with a high-resolution
timestamp, and announced to the outbound-webhook dispatcher.
"""

from __future__ import annotations

import copy
import json
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox import schema
from sandbox.crm_actions import (
    HubSpotActionState,
    SalesforceRoutingError,
    check_salesforce_routing,
    demo_hubspot_state,
    seed_salesforce,
)
from sandbox.ids import DEFAULT_HUBSPOT_PORTAL_ID, SF_KEY_PREFIXES, iso_ms, sf_datetime, sf_id18, sf_new_id


class HubSpotValidationError(ValueError):
    """A HubSpot write was refused; carries HubSpot's error fields."""

    def __init__(self, message: str, errors: list[dict[str, Any]], context: dict[str, list[str]] | None = None,
                 category: str = "VALIDATION_ERROR", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.context = context or {}
        self.category = category
        self.status = status


class SalesforceRecordError(ValueError):
    """A Salesforce write was refused for one record; carries statusCode, message and fields."""

    def __init__(self, status_code: str, message: str, fields: list[str] | None = None, http_status: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.fields = fields or []
        self.http_status = http_status

    def as_result_error(self) -> dict[str, Any]:
        """Return the per-record error object of an sObject Collections result."""
        return {"statusCode": self.status_code, "message": self.message, "fields": self.fields}

    def as_rest_error(self) -> dict[str, Any]:
        """Return the top-level REST error object (note: errorCode, not statusCode)."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.status_code}
        if self.fields:
            body["fields"] = self.fields
        return body


@dataclass(frozen=True, slots=True)
class PropertyWrite:
    """One field written on one record, with the wall-clock time it became visible."""

    crm: str
    object_type: str
    object_id: str
    property: str
    value: Any
    t: float  # time.time() when the write committed
    t_ns: int  # time.time_ns(), for sub-millisecond latency measurements
    source: str


@dataclass(frozen=True, slots=True)
class Change:
    """A record change the outbound webhooks announce."""

    crm: str
    object_type: str  # HubSpot plural type or Salesforce sObject name
    object_id: str
    kind: str  # created | property_change | association_change
    properties: dict[str, Any] = field(default_factory=dict)
    source: str = "API"
    occurred_at_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


ChangeListener = Callable[[Change], None]
# Where a HubSpot record keeps each property's value history (what propertiesWithHistory shows).
HS_HISTORY = "_history"


def _hs_copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a stored HubSpot record that callers may change freely.

    Not copy.deepcopy: a record's history grows with every write (hs_lastmodifieddate on each one), and deep-copying
    it on every answer doubled the batch update's time in bench.e2e. Property values are strings and history
    entries are never changed after they are appended, so copying the containers is enough.
    """
    out = dict(obj)
    out["properties"] = dict(obj["properties"])
    if HS_HISTORY in obj:
        out[HS_HISTORY] = {name: list(entries) for name, entries in obj[HS_HISTORY].items()}
    return out


# Where each object type's ids start (activities far from records, so an id rarely names two kinds of object).
HS_FIRST_IDS = {"contacts": 100, "companies": 9000, "deals": 500, "calls": 20000, "emails": 30000, "meetings": 40000,
                "notes": 50000, "tasks": 60000}


def _now_ms() -> int:
    return int(time.time() * 1000)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                     ">=": operator.ge}
_HS_COMPARISONS = {"EQ": "=", "NEQ": "!=", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}


def compare_values(op: str, left: Any, right: Any) -> bool:
    """Compare filter operands (= != < <= > >=) as both CRMs do; an ordering with a missing side is false."""
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if left is None or right is None:
        return False
    try:
        return _ORDERINGS[op](left, right)
    except TypeError:  # values of different kinds have no order; the filter simply does not match
        return False


def hs_to_ms(value: Any) -> float | None:
    """Turn a HubSpot date/datetime value (epoch ms or ISO text) into epoch milliseconds."""
    if value is None or value == "":
        return None
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() * 1000


class SandboxStore:
    """All sandbox records behind one re-entrant lock."""

    def __init__(self, *, sf_daily_api_max: int = 15000, hubspot_portal_id: int = DEFAULT_HUBSPOT_PORTAL_ID,
                 max_write_log: int = 500_000) -> None:
        self.lock = threading.RLock()
        self.hubspot_portal_id = hubspot_portal_id
        self.sf_daily_api_max = sf_daily_api_max
        self._listeners: list[ChangeListener] = []
        self.writes: deque[PropertyWrite] = deque(maxlen=max_write_log)
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Drop every record and return to the built-in schema."""
        with self.lock:
            self.hs_objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in schema.HS_OBJECT_TYPES}
            self.hs_properties = schema.hubspot_builtin_properties()
            self.hs_groups = schema.hubspot_builtin_groups()
            # (from_type, from_id) -> {(to_type, to_id): set(type ids)}; kept symmetric.
            self.hs_assoc: dict[tuple[str, str], dict[tuple[str, str], set[int]]] = {}
            self.hs_counters = dict(HS_FIRST_IDS)
            self.sf_fields = schema.salesforce_builtin_fields()
            self.sf_records: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in self.sf_fields}
            self.sf_counter = 0
            self.sf_api_used = 0
            self.sf_api_window_start = time.time()
            self.writes.clear()
            default_user = self._sf_new_id("User")
            self.sf_records["User"][default_user] = {"Id": default_user, "Name": "Sandbox Admin",
                                                     "Email": "admin@sandbox.invalid",
                                                     "Username": "admin@sandbox.leadbridge"}
            self.sf_default_owner = default_user
            self.sf_records["User"][default_user]["IsActive"] = True
            # Rule actions (issue 16): HubSpot owners, lists, sequences; Salesforce users, a queue, a campaign.
            self.hs_actions = demo_hubspot_state()
            self.sf_demo = seed_salesforce(self)
            self.writes.clear()

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` with every Change (from any thread, while the store lock is held)."""
        self._listeners.append(listener)

    def _emit(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)

    def _log_writes(self, crm: str, otype: str, oid: str, props: Mapping[str, Any], source: str) -> None:
        t_ns = time.time_ns()
        for name, value in props.items():
            self.writes.append(PropertyWrite(crm, otype, oid, name, value, t_ns / 1e9, t_ns, source))

    def writes_since(self, since: float = 0.0, prefix: str = "", crm: str | None = None,
                     object_id: str | None = None) -> list[dict[str, Any]]:
        """Return the property writes after `since` whose property starts with `prefix` (case-insensitive)."""
        prefix = prefix.lower()
        with self.lock:
            return [
                asdict(w) for w in self.writes
                if w.t >= since and w.property.lower().startswith(prefix) and (crm is None or w.crm == crm)
                and (object_id is None or w.object_id == object_id)
            ]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every record and schema change to a JSON file (atomically)."""
        with self.lock:
            state = {
                "hs_objects": self.hs_objects,
                "hs_properties": self.hs_properties,
                "hs_groups": self.hs_groups,
                "hs_assoc": [
                    [a[0], a[1], b[0], b[1], sorted(ids)] for a, targets in self.hs_assoc.items() for b, ids in targets.items()
                ],
                "hs_counters": self.hs_counters,
                "sf_fields": self.sf_fields,
                "sf_records": self.sf_records,
                "sf_counter": self.sf_counter,
                "sf_default_owner": self.sf_default_owner,
                "hs_actions": self.hs_actions.to_json(),
                "sf_demo": self.sf_demo,
            }
            text = json.dumps(state)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, target)

    def load(self, path: str | os.PathLike[str]) -> bool:
        """Load state saved by `save`; return False when the file does not exist."""
        target = Path(path)
        if not target.exists():
            return False
        state = json.loads(target.read_text())
        with self.lock:
            self.hs_objects = state["hs_objects"]
            self.hs_properties = state["hs_properties"]
            self.hs_groups = state["hs_groups"]
            self.hs_assoc = {}
            for ft, fid, tt, tid, ids in state["hs_assoc"]:
                self.hs_assoc.setdefault((ft, fid), {})[(tt, tid)] = set(ids)
            self.hs_counters = state["hs_counters"]
            # A save from before the activity objects existed: add them, empty.
            builtin_props, builtin_groups = schema.hubspot_builtin_properties(), schema.hubspot_builtin_groups()
            for otype in schema.HS_OBJECT_TYPES:
                self.hs_objects.setdefault(otype, {})
                self.hs_counters.setdefault(otype, HS_FIRST_IDS[otype])
                self.hs_groups.setdefault(otype, builtin_groups[otype])
                props = self.hs_properties.setdefault(otype, {})
                for name, prop in builtin_props[otype].items():
                    props.setdefault(name, prop)
            self.sf_fields = state["sf_fields"]
            self.sf_records = state["sf_records"]
            # A save from before the History objects existed: add them, tracking nothing.
            for name, fields in schema.salesforce_builtin_fields().items():
                self.sf_fields.setdefault(name, fields)
                self.sf_records.setdefault(name, {})
            self.sf_counter = state["sf_counter"]
            self.sf_default_owner = state["sf_default_owner"]
            self.hs_actions = HubSpotActionState.from_json(state.get("hs_actions"))
            self.sf_demo = state.get("sf_demo") or self.sf_demo
        return True

    # ================================================================== HubSpot
    @staticmethod
    def hs_type(name: str) -> str | None:
        """Normalise a HubSpot object type (contact, contacts, 0-1) to its plural name, or None if unknown."""
        return schema.HS_TYPE_ALIASES.get(name.lower())

    def hs_prop_defs(self, otype: str) -> dict[str, dict[str, Any]]:
        """Return the property definitions of an object type."""
        return self.hs_properties[otype]

    def _hs_validate(self, otype: str, props: Mapping[str, Any], *, creating: bool) -> dict[str, str | None]:
        defs = self.hs_properties[otype]
        clean: dict[str, str | None] = {}
        problems: list[dict[str, Any]] = []
        for name, raw in props.items():
            prop = defs.get(name)
            if prop is None:
                problems.append({"isValid": False, "message": f'Property "{name}" does not exist',
                                 "error": "PROPERTY_DOESNT_EXIST", "name": name})
                continue
            if prop["modificationMetadata"].get("readOnlyValue") and name != "hs_object_id":
                problems.append({"isValid": False, "message": f'"{name}" is a read only property; its value cannot be set.',
                                 "error": "READ_ONLY_VALUE", "name": name})
                continue
            if raw is None or raw == "":
                clean[name] = "" if raw == "" else None
                continue
            value = str(raw).lower() if isinstance(raw, bool) else str(raw)
            ptype = prop["type"]
            if ptype == "number":
                try:
                    float(value)
                except ValueError:
                    problems.append({"isValid": False, "message": f"{value} was not a valid number.",
                                     "error": "INVALID_INTEGER", "name": name})
                    continue
            elif ptype in ("date", "datetime"):
                if hs_to_ms(value) is None:
                    problems.append({"isValid": False, "message": f"{value} was not a valid long.",
                                     "error": "INVALID_LONG", "name": name})
                    continue
            elif ptype == "bool" and value not in ("true", "false"):
                problems.append({"isValid": False, "message": f"{value} was not a valid boolean.",
                                 "error": "INVALID_BOOLEAN", "name": name})
                continue
            elif ptype == "enumeration" and prop["options"]:
                allowed = {o["value"] for o in prop["options"]}
                if any(v not in allowed for v in value.split(";")):
                    problems.append({"isValid": False, "message": f"{value} was not one of the allowed options: "
                                     + ", ".join(sorted(allowed)), "error": "INVALID_OPTION", "name": name})
                    continue
            if ptype == "string" and len(value) > 65536:
                problems.append({"isValid": False, "message": f"{name} is longer than 65536 characters",
                                 "error": "TOO_LONG", "name": name})
                continue
            clean[name] = value
        if creating:
            problems.extend({"isValid": False, "message": f"{name} is required", "error": "REQUIRED_PROPERTY",
                             "name": name} for name in schema.HS_REQUIRED_ON_CREATE.get(otype, ())
                            if props.get(name) in (None, ""))
        if creating and otype == "contacts" and props.get("email"):
            existing = self._hs_find_by(otype, "email", str(props["email"]))
            if existing is not None:
                raise HubSpotValidationError(f"Contact already exists. Existing ID: {existing}", [], category="CONFLICT",
                                             status=409)
        if problems:
            raise HubSpotValidationError(
                "Property values were not valid: " + json.dumps(problems),
                [{"message": p["message"], "in": p["name"], "code": p["error"], "subCategory": None, "context": {}}
                 for p in problems],
                {"propertyName": [p["name"] for p in problems]},
            )
        return clean

    def _hs_find_by(self, otype: str, prop: str, value: str) -> str | None:
        lowered = value.lower()
        for oid, obj in self.hs_objects[otype].items():
            stored = obj["properties"].get(prop)
            if stored is not None and stored.lower() == lowered and not obj["archived"]:
                return oid
        return None

    def hs_resolve_id(self, otype: str, ident: str, id_property: str | None = None) -> str | None:
        """Return the record id for `ident`, looked up by `id_property` when given."""
        with self.lock:
            if id_property and id_property != "hs_object_id":
                return self._hs_find_by(otype, id_property, ident)
            obj = self.hs_objects[otype].get(str(ident))
            return str(ident) if obj is not None and not obj["archived"] else None

    def hs_create(self, otype: str, props: Mapping[str, Any], *, source: str = "API",
                  created_at: float | None = None, user_id: str | None = None) -> dict[str, Any]:
        """Create a HubSpot record; raises HubSpotValidationError like the API would.

        `user_id`: the HubSpot user making the change (a rep in the UI, or the private app's user for the API);
        an activity records it as hs_created_by_user_id and every value's history as updatedByUserId.
        """
        with self.lock:
            clean = self._hs_validate(otype, props, creating=True)
            self.hs_counters[otype] += 1
            oid = str(self.hs_counters[otype])
            now = time.time() if created_at is None else created_at
            stamp = iso_ms(now)
            clean.update({"hs_object_id": oid, schema.HS_CREATED_PROPERTY[otype]: stamp,
                          schema.HS_MODIFIED_PROPERTY[otype]: stamp})
            if otype in schema.HS_ENGAGEMENT_TYPES:
                clean["hs_object_source"] = "INTEGRATION" if source == "API" else source
                if user_id is not None:
                    clean["hs_created_by_user_id"] = str(user_id)
            if otype == "contacts" and not clean.get("lifecyclestage"):
                clean["lifecyclestage"] = "lead"
            if otype == "deals":
                clean.setdefault("pipeline", "default")
                self._hs_deal_flags(clean)
            obj = {"id": oid, "properties": clean, "createdAt": stamp, "updatedAt": stamp, "archived": False,
                   HS_HISTORY: {}}
            self._hs_remember(obj, clean, stamp, source, user_id)
            self.hs_objects[otype][oid] = obj
            self._log_writes("hubspot", otype, oid, {k: v for k, v in clean.items() if k in props}, source)
            self._emit(Change("hubspot", otype, oid, "created", dict(clean), source, int(now * 1000)))
            return _hs_copy(obj)

    @staticmethod
    def _hs_remember(obj: dict[str, Any], values: Mapping[str, Any], stamp: str, source: str,
                     user_id: str | None = None) -> None:
        """Append each set value to its property's history (oldest first here; the API shows newest first).

        A cleared value is an entry with value "", unless the property never had one (no entry at all).
        """
        history = obj.setdefault(HS_HISTORY, {})
        for name, value in values.items():
            if value is None and name not in history:
                continue
            entry: dict[str, Any] = {"value": "" if value is None else str(value), "timestamp": stamp,
                                     "sourceType": source}
            if user_id is not None:
                entry["updatedByUserId"] = int(user_id)
            history.setdefault(name, []).append(entry)

    def hs_history(self, obj: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
        """A property's value history as HubSpot's propertiesWithHistory shows it: newest first, each
        {value, timestamp, sourceType}. A record saved before histories were kept shows its current value."""
        history = (obj.get(HS_HISTORY) or {}).get(name)
        if history is None:
            value = obj["properties"].get(name)
            return [] if value is None else [{"value": str(value), "timestamp": obj["updatedAt"], "sourceType": "API"}]
        return [dict(entry) for entry in reversed(history)]

    @staticmethod
    def _hs_deal_flags(props: dict[str, Any]) -> None:
        stage = props.get("dealstage")
        props["hs_is_closed_won"] = "true" if stage == "closedwon" else "false"
        props["hs_is_closed"] = "true" if stage in ("closedwon", "closedlost") else "false"

    def hs_update(self, otype: str, oid: str, props: Mapping[str, Any], *, source: str = "API",
                  at: float | None = None, user_id: str | None = None) -> dict[str, Any]:
        """Update properties of one record; only changed values are logged and announced (`user_id` as in hs_create)."""
        with self.lock:
            obj = self.hs_objects[otype].get(oid)
            if obj is None or obj["archived"]:
                raise KeyError(oid)
            clean = self._hs_validate(otype, props, creating=False)
            changed = {k: v for k, v in clean.items() if obj["properties"].get(k) != v}
            now = time.time() if at is None else at
            stamp = iso_ms(now)
            obj["properties"].update(clean)
            if otype == "deals" and "dealstage" in changed:
                self._hs_deal_flags(obj["properties"])
            obj["properties"][schema.HS_MODIFIED_PROPERTY[otype]] = stamp
            obj["updatedAt"] = stamp
            self._hs_remember(obj, {**changed, schema.HS_MODIFIED_PROPERTY[otype]: stamp}, stamp, source, user_id)
            # The write log records every write the API accepted (benchmarks time writes, changed or not).
            self._log_writes("hubspot", otype, oid, clean, source)
            for name, value in changed.items():
                self._emit(Change("hubspot", otype, oid, "property_change", {name: value}, source, int(now * 1000)))
            return _hs_copy(obj)

    def hs_get(self, otype: str, oid: str) -> dict[str, Any] | None:
        """Return a deep copy of one live record, or None."""
        with self.lock:
            obj = self.hs_objects[otype].get(oid)
            return _hs_copy(obj) if obj is not None and not obj["archived"] else None

    def hs_archive(self, otype: str, oid: str) -> bool:
        """Archive (soft-delete) one record."""
        with self.lock:
            obj = self.hs_objects[otype].get(oid)
            if obj is None or obj["archived"]:
                return False
            obj["archived"] = True
            obj["archivedAt"] = iso_ms()
            return True

    def hs_list(self, otype: str, after: str | None, limit: int, archived: bool = False) -> tuple[list[dict[str, Any]], str | None]:
        """Return one page of records ordered by id and the cursor of the next page."""
        with self.lock:
            ids = sorted((int(i) for i, o in self.hs_objects[otype].items() if o["archived"] == archived))
            start = int(after) if after else -1
            page = [i for i in ids if i > start][: limit + 1]
            more = len(page) > limit
            page = page[:limit]
            objs = [_hs_copy(self.hs_objects[otype][str(i)]) for i in page]
            return objs, (str(page[-1]) if more and page else None)

    def hs_search(self, otype: str, filter_groups: list[dict[str, Any]], sorts: list[Any], query: str | None,
                  after: int, limit: int) -> tuple[int, list[dict[str, Any]], int | None]:
        """Evaluate a CRM search request; returns (total, page, next offset)."""
        with self.lock:
            defs = self.hs_properties[otype]
            matched = [o for o in self.hs_objects[otype].values() if not o["archived"]
                       and (not filter_groups or any(all(self._hs_match(o, f, defs) for f in g.get("filters", []))
                                                     for g in filter_groups))
                       and (not query or self._hs_text_match(o, query))]
            keyed = []
            for spec in sorts or []:
                if isinstance(spec, str):
                    name, desc = (spec[1:], True) if spec.startswith("-") else (spec, False)
                else:
                    name, desc = spec.get("propertyName", ""), spec.get("direction", "ASCENDING") == "DESCENDING"
                keyed.append((name, desc))
            if not keyed:
                keyed = [("hs_object_id", False)]
            for name, desc in reversed(keyed):
                matched.sort(key=lambda o, n=name: self._hs_sort_key(o, n, defs), reverse=desc)
            total = len(matched)
            page = matched[after : after + limit]
            nxt = after + limit if after + limit < total else None
            return total, [_hs_copy(o) for o in page], nxt

    @staticmethod
    def _hs_sort_key(obj: dict[str, Any], name: str, defs: dict[str, dict[str, Any]]) -> tuple[int, Any]:
        value = obj["properties"].get(name)
        if value is None:
            return (1, 0)
        ptype = defs.get(name, {}).get("type", "string")
        if ptype == "number":
            return (0, float(value))
        if ptype in ("date", "datetime"):
            return (0, hs_to_ms(value) or 0)
        return (0, str(value).lower())

    @staticmethod
    def _hs_text_match(obj: dict[str, Any], query: str) -> bool:
        text = query.lower()
        props = obj["properties"]
        return any(text in str(props.get(k) or "").lower() for k in ("email", "firstname", "lastname", "name", "domain",
                                                                        "dealname", "phone", "company"))

    @staticmethod
    def _hs_match(obj: dict[str, Any], flt: dict[str, Any], defs: dict[str, dict[str, Any]]) -> bool:
        name = flt["propertyName"]
        op = flt["operator"]
        stored = obj["properties"].get(name)
        if name == "hs_object_id":
            stored = obj["id"]
        if op == "HAS_PROPERTY":
            return stored not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return stored in (None, "")
        ptype = defs.get(name, {}).get("type", "string")

        def conv(v: Any) -> Any:
            if v is None:
                return None
            if ptype == "number" or name == "hs_object_id":
                try:
                    return float(v)
                except (TypeError, ValueError):
                    return None
            if ptype in ("date", "datetime"):
                return hs_to_ms(v)
            return str(v).lower()

        left = conv(stored)
        if op in ("IN", "NOT_IN"):
            values = {conv(v) for v in flt.get("values") or []}
            return (left in values) == (op == "IN")
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(flt.get("value", "")).lower().replace("*", "")
            has = left is not None and token in str(left)
            return has == (op == "CONTAINS_TOKEN")
        right = conv(flt.get("value"))
        if op == "BETWEEN":
            high = conv(flt.get("highValue"))
            return compare_values("<=", right, left) and compare_values("<=", left, high)
        return compare_values(_HS_COMPARISONS[op], left, right)

    # ---- associations
    def hs_associate(self, ftype: str, fid: str, ttype: str, tid: str, type_ids: Iterable[int] | None = None,
                     *, source: str = "API") -> list[int]:
        """Associate two records (both directions); returns the type ids now on from->to."""
        with self.lock:
            if self.hs_get(ftype, fid) is None:
                raise KeyError(fid)
            if self.hs_get(ttype, tid) is None:
                raise KeyError(tid)
            default, primary = schema.HS_ASSOC_TYPE_IDS.get((ftype, ttype), (0, None))
            rdefault, rprimary = schema.HS_ASSOC_TYPE_IDS.get((ttype, ftype), (0, None))
            wanted = set(type_ids) if type_ids else {default}
            forward = self.hs_assoc.setdefault((ftype, fid), {}).setdefault((ttype, tid), set())
            backward = self.hs_assoc.setdefault((ttype, tid), {}).setdefault((ftype, fid), set())
            new = not forward
            forward.update(wanted)
            backward.add(rdefault)
            if primary is not None and primary in wanted and rprimary is not None:
                backward.add(rprimary)
            if new:
                kind = f"{schema.HS_SINGULAR[ftype]}_TO_{schema.HS_SINGULAR[ttype]}".upper()
                self._emit(Change("hubspot", ftype, fid, "association_change", {}, source, _now_ms(),
                                  {"associationType": kind, "fromObjectId": fid, "toObjectId": tid,
                                   "associationRemoved": False, "isPrimaryAssociation": primary in wanted,
                                   "toObjectType": ttype}))
            return sorted(forward)

    def hs_unassociate(self, ftype: str, fid: str, ttype: str, tid: str) -> None:
        """Remove every association between two records."""
        with self.lock:
            self.hs_assoc.get((ftype, fid), {}).pop((ttype, tid), None)
            self.hs_assoc.get((ttype, tid), {}).pop((ftype, fid), None)

    def hs_associations(self, ftype: str, fid: str, ttype: str) -> list[tuple[str, list[int]]]:
        """Return [(to_id, type_ids)] for one record, ordered by id."""
        with self.lock:
            targets = self.hs_assoc.get((ftype, fid), {})
            out = [(tid, sorted(ids)) for (tt, tid), ids in targets.items() if tt == ttype
                   and self.hs_objects[ttype].get(tid, {}).get("archived") is False]
            return sorted(out, key=lambda x: int(x[0]))

    # ---- properties and groups
    def hs_create_property(self, otype: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a custom property; raises HubSpotValidationError (409 on duplicates)."""
        with self.lock:
            missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
            if missing:
                raise HubSpotValidationError(
                    f"Invalid input JSON: missing required field(s): {', '.join(missing)}",
                    [{"message": f"{m} is required", "in": m, "code": "REQUIRED_FIELD"} for m in missing])
            name = str(body["name"])
            if name in self.hs_properties[otype]:
                raise HubSpotValidationError(f"Property named '{name}' already exists.", [], {"name": [name]},
                                             category="OBJECT_ALREADY_EXISTS", status=409)
            if body["type"] not in ("string", "number", "date", "datetime", "enumeration", "bool"):
                raise HubSpotValidationError(f"Unknown property type '{body['type']}'", [], {"type": [str(body["type"])]})
            if body["fieldType"] not in ("textarea", "text", "date", "file", "number", "select", "radio", "checkbox",
                                         "booleancheckbox", "calculation_equation", "html", "phonenumber"):
                raise HubSpotValidationError(f"Unknown fieldType '{body['fieldType']}'", [],
                                             {"fieldType": [str(body["fieldType"])]})
            allowed = schema.HS_FIELD_TYPES_OF[body["type"]]
            if body["fieldType"] not in allowed:
                raise HubSpotValidationError(
                    f"fieldType '{body['fieldType']}' is not valid for a property of type '{body['type']}'; use one of "
                    f"{', '.join(allowed)}", [], {"fieldType": [str(body["fieldType"])]})
            if body["fieldType"] == "calculation_equation":
                # HubSpot evaluates the formula on every record; the sandbox cannot, so it refuses to pretend.
                raise HubSpotValidationError("The sandbox CRM does not evaluate calculation properties "
                                             "(fieldType calculation_equation).", [], {"fieldType": ["calculation_equation"]})
            options = body.get("options") or []
            if not isinstance(options, list) or not all(
                    isinstance(o, dict) and isinstance(o.get("label"), str) and isinstance(o.get("value"), str)
                    for o in options):
                raise HubSpotValidationError("Invalid input JSON: options must be a list of {label, value} objects",
                                             [], {"options": ["invalid"]})
            if body["groupName"] not in self.hs_groups[otype]:
                raise HubSpotValidationError(f"Property group '{body['groupName']}' does not exist.", [],
                                             {"groupName": [str(body["groupName"])]})
            stamp = iso_ms()
            prop = {
                "name": name, "label": body["label"], "type": body["type"], "fieldType": body["fieldType"],
                "groupName": body["groupName"], "description": body.get("description") or "",
                "options": [dict({"hidden": False, "description": "", "displayOrder": i}, **o)
                            for i, o in enumerate(options)],
                "displayOrder": body.get("displayOrder", -1), "calculated": False, "externalOptions": False,
                "hasUniqueValue": bool(body.get("hasUniqueValue", False)), "hidden": bool(body.get("hidden", False)),
                "hubspotDefined": False, "formField": bool(body.get("formField", False)),
                "modificationMetadata": {"archivable": True, "readOnlyDefinition": False, "readOnlyValue": False},
                "createdAt": stamp, "updatedAt": stamp, "archived": False, "createdUserId": "1", "updatedUserId": "1",
            }
            self.hs_properties[otype][name] = prop
            return copy.deepcopy(prop)

    def hs_update_property(self, otype: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Patch a custom property's definition."""
        with self.lock:
            prop = self.hs_properties[otype].get(name)
            if prop is None:
                raise KeyError(name)
            if prop["hubspotDefined"]:
                raise HubSpotValidationError(f"Property '{name}' is HubSpot-defined and read-only.", [],
                                             {"name": [name]})
            for key in ("label", "type", "fieldType", "groupName", "description", "options", "displayOrder",
                        "hidden", "formField"):
                if key in body and body[key] is not None:
                    prop[key] = body[key]
            prop["updatedAt"] = iso_ms()
            return copy.deepcopy(prop)

    def hs_create_group(self, otype: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a property group; 409 when the name exists."""
        with self.lock:
            name = str(body.get("name") or "")
            if not name or not body.get("label"):
                raise HubSpotValidationError("Invalid input JSON: name and label are required", [])
            if name in self.hs_groups[otype]:
                raise HubSpotValidationError(f"Property group named '{name}' already exists.", [], {"name": [name]},
                                             category="OBJECT_ALREADY_EXISTS", status=409)
            group = {"name": name, "label": body["label"], "displayOrder": body.get("displayOrder", -1), "archived": False}
            self.hs_groups[otype][name] = group
            return dict(group)

    # ================================================================== Salesforce
    def _sf_new_id(self, sobject: str) -> str:
        self.sf_counter += 1
        return sf_new_id(SF_KEY_PREFIXES.get(sobject, "a00"), self.sf_counter)

    def sf_sobject(self, name: str) -> str | None:
        """Return the canonical spelling of an sObject name, or None if unknown."""
        for known in self.sf_fields:
            if known.lower() == name.lower():
                return known
        return None

    def sf_field(self, sobject: str, name: str) -> dict[str, Any] | None:
        """Return a field definition by case-insensitive name."""
        fields = self.sf_fields[sobject]
        if name in fields:
            return fields[name]
        lowered = name.lower()
        for fname, fdef in fields.items():
            if fname.lower() == lowered:
                return fdef
        return None

    def sf_count_api_call(self) -> tuple[int, int, bool]:
        """Count one API request against the rolling 24 h budget; returns (used, max, over_limit)."""
        with self.lock:
            now = time.time()
            if now - self.sf_api_window_start >= 86400:
                self.sf_api_window_start, self.sf_api_used = now, 0
            if self.sf_api_used >= self.sf_daily_api_max:
                return self.sf_api_used, self.sf_daily_api_max, True
            self.sf_api_used += 1
            return self.sf_api_used, self.sf_daily_api_max, False

    def sf_normalise_id(self, sobject: str, rid: str) -> str:
        """Return the 18-character id or raise SalesforceRecordError(MALFORMED_ID)."""
        label = schema.SF_LABELS.get(sobject, (sobject, sobject))[0]
        prefix = SF_KEY_PREFIXES.get(sobject)
        if not isinstance(rid, str) or len(rid) not in (15, 18) or not rid.isalnum() or (prefix and not rid.startswith(prefix)):
            raise SalesforceRecordError("MALFORMED_ID", f"{label} ID: id value of incorrect type: {rid}", ["Id"])
        return sf_id18(rid)

    def _sf_coerce(self, sobject: str, fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "attributes":
                continue
            fdef = self.sf_field(sobject, name)
            if fdef is None:
                raise SalesforceRecordError("INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}", [name])
            fname = fdef["name"]
            if not fdef["updateable"]:
                code = "INVALID_FIELD_FOR_INSERT_UPDATE"
                raise SalesforceRecordError(code, f"Unable to create/update fields: {fname}. Please check the security "
                                            "settings of this field and verify that it is read/write for your profile "
                                            "or permission set.", [fname])
            if value is None:
                if not fdef["nillable"]:
                    raise SalesforceRecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{fname}]", [fname])
                clean[fname] = None
                continue
            ftype = fdef["type"]
            if ftype in ("double", "currency", "percent", "int"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    try:
                        value = float(value)
                    except (TypeError, ValueError):
                        raise SalesforceRecordError("INVALID_TYPE_ON_FIELD_IN_RECORD",
                                                    f"{fdef['label']}: value not of required type: {value}", [fname]) from None
                if ftype == "int":
                    value = int(value)
                else:
                    value = float(value)
                    digits = len(str(int(abs(value))))
                    if fdef["precision"] and digits > fdef["precision"] - fdef["scale"]:
                        raise SalesforceRecordError("NUMBER_OUTSIDE_VALID_RANGE",
                                                    f"{fdef['label']}: value outside of valid range on numeric field: "
                                                    f"{value}", [fname])
            elif ftype == "picklist" and fdef.get("restrictedPicklist") and str(value) not in {
                    v["value"] for v in fdef["picklistValues"] if v.get("active")}:
                raise SalesforceRecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                            f"{fdef['label']}: bad value for restricted picklist field: {value}", [fname])
            elif ftype == "boolean":
                if not isinstance(value, bool):
                    raise SalesforceRecordError("INVALID_TYPE_ON_FIELD_IN_RECORD",
                                                f"{fdef['label']}: value not of required type: {value}", [fname])
            else:
                value = str(value)
                if fdef["length"] and len(value) > fdef["length"]:
                    raise SalesforceRecordError("STRING_TOO_LONG", f"{fdef['label']}: data value too large: "
                                                f"{value[:20]}... (max length={fdef['length']})", [fname])
                if ftype == "reference":
                    # A polymorphic reference (a Task's WhoId: Contact or Lead) names its target by the key prefix.
                    targets = fdef["referenceTo"] or [""]
                    target = next((t for t in targets if value.startswith(SF_KEY_PREFIXES.get(t, "\0"))), targets[0])
                    try:
                        value = self.sf_normalise_id(target, value)
                    except SalesforceRecordError:
                        raise SalesforceRecordError("INVALID_CROSS_REFERENCE_KEY", f"{fdef['label']}: id value of "
                                                    f"incorrect type: {value}", [fname]) from None
                    if value not in self.sf_records.get(target, {}):
                        raise SalesforceRecordError("INVALID_CROSS_REFERENCE_KEY",
                                                    "invalid cross reference id", [fname])
            clean[fname] = value
        if creating:
            required = [f["name"] for f in self.sf_fields[sobject].values()
                        if not f["nillable"] and f["updateable"] and f["type"] != "boolean" and f["name"] not in clean
                        and not f.get("defaultedOnCreate")]
            if required:
                raise SalesforceRecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(required)}]",
                                            required)
        return clean

    def _sf_derive(self, sobject: str, rec: dict[str, Any], stamp: str | None = None) -> None:
        if sobject in ("Lead", "Contact"):
            rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p)
        if sobject == "Opportunity":
            stage = rec.get("StageName") or ""
            rec["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            rec["IsWon"] = stage == "Closed Won"
        if sobject == "Task":
            rec["IsClosed"] = rec.get("Status") in schema.SF_CLOSED_TASK_STATUSES
            # Salesforce stamps the moment a task was completed, and clears it when the task is reopened.
            rec["CompletedDateTime"] = (rec.get("CompletedDateTime") or stamp) if rec["IsClosed"] else None
        if sobject == "Event":
            rec["ActivityDate"] = str(rec.get("ActivityDateTime") or "")[:10] or None

    # ------------------------------------------------------------------ Field History Tracking
    def sf_history_object(self, sobject: str) -> str | None:
        """The History object recording `sobject`'s tracked fields (Lead -> LeadHistory), or None."""
        return next((h for h, parent in schema.SF_HISTORY_OBJECTS.items() if parent == sobject), None)

    def sf_tracked_fields(self, sobject: str) -> list[str]:
        """The fields of `sobject` whose changes its History object records (none when it has no History object)."""
        history = self.sf_history_object(sobject)
        if history is None:
            return []
        with self.lock:
            values = self.sf_fields[history]["Field"]["picklistValues"]
            return [v["value"] for v in values if v["value"] != schema.SF_HISTORY_CREATED]

    def sf_set_tracked_fields(self, sobject: str, names: Iterable[str]) -> list[str]:
        """Set which fields of `sobject` are tracked (what Setup's Field History Tracking page saves; the whole set).

        Raises SalesforceRecordError for an object without history, an unknown or untrackable field (read-only,
        formula, the audit fields), or more than 20 fields. Tracking starts now: earlier changes have no rows.
        """
        with self.lock:
            history = self.sf_history_object(sobject)
            if history is None:
                raise SalesforceRecordError("INVALID_TYPE", f"{sobject} has no field history; the sandbox tracks "
                                            f"{', '.join(schema.SF_HISTORY_OBJECTS.values())}")
            tracked: list[str] = []
            for name in names:
                fdef = self.sf_field(sobject, str(name))
                if fdef is None:
                    raise SalesforceRecordError("INVALID_FIELD", f"No such field {name} on {sobject}", [str(name)])
                if not fdef["updateable"] or fdef.get("calculated") or fdef.get("autoNumber"):
                    raise SalesforceRecordError("INVALID_FIELD", f"{fdef['name']} cannot be tracked: read-only, "
                                                "formula and auto-number fields have no history", [fdef["name"]])
                if fdef["name"] not in tracked:
                    tracked.append(fdef["name"])
            if len(tracked) > schema.SF_HISTORY_MAX_TRACKED:
                raise SalesforceRecordError("LIMIT_EXCEEDED", f"{sobject} can track at most "
                                            f"{schema.SF_HISTORY_MAX_TRACKED} fields, not {len(tracked)}")
            self.sf_fields[history]["Field"]["picklistValues"] = schema.sf_picklist_values(
                [schema.SF_HISTORY_CREATED, *tracked])
            return tracked

    def _sf_record_history(self, sobject: str, rid: str, before: Mapping[str, Any], after: Mapping[str, Any],
                           stamp: str, *, created: bool = False, user_id: str | None = None) -> None:
        """Write the History rows of one change: a `created` row, or one row per tracked field that changed."""
        if sobject == "Opportunity":
            self._sf_opportunity_history(rid, before, after, stamp, created, user_id)
            return
        history = self.sf_history_object(sobject)
        tracked = self.sf_tracked_fields(sobject)
        if history is None or not tracked:
            return  # history tracking is off for the object: Salesforce records nothing, not even the creation
        rows: list[tuple[str, Any, Any]] = []
        if created:
            rows.append((schema.SF_HISTORY_CREATED, None, None))
        else:
            rows.extend((name, before.get(name), after.get(name)) for name in tracked
                        if before.get(name) != after.get(name))
        for name, old, new in rows:
            fdef = self.sf_field(sobject, name) if name != schema.SF_HISTORY_CREATED else None
            ftype = fdef["type"] if fdef else "string"
            hid = self._sf_new_id(history)
            self.sf_records[history][hid] = {
                "Id": hid, f"{sobject}Id": rid, "CreatedById": user_id or self.sf_default_owner, "CreatedDate": stamp,
                "IsDeleted": False, "Field": name, "DataType": schema.SF_HISTORY_DATA_TYPES.get(ftype, "Text"),
                "OldValue": self._sf_history_value(fdef, old), "NewValue": self._sf_history_value(fdef, new)}

    def _sf_opportunity_history(self, rid: str, before: Mapping[str, Any], after: Mapping[str, Any], stamp: str,
                                created: bool, user_id: str | None) -> None:
        """An OpportunityHistory row for a new opportunity and for each change of its stage, amount or close date.

        Unlike field history, Salesforce keeps these rows whatever the org tracks: they feed the stage reports.
        """
        if not created and all(before.get(f) == after.get(f) for f in schema.SF_OPPORTUNITY_HISTORY_FIELDS):
            return
        hid = self._sf_new_id("OpportunityHistory")
        self.sf_records["OpportunityHistory"][hid] = {
            "Id": hid, "OpportunityId": rid, "CreatedById": user_id or self.sf_default_owner, "CreatedDate": stamp,
            "SystemModstamp": stamp, "IsDeleted": False,
            **{f: after.get(f) for f in schema.SF_OPPORTUNITY_HISTORY_FIELDS}}

    @staticmethod
    def _sf_history_value(fdef: Mapping[str, Any] | None, value: Any) -> Any:
        # A long text area's change is recorded without its values; other text keeps its first 255 characters.
        if fdef is None or value is None or fdef["type"] == "textarea" and fdef["length"] > schema.SF_HISTORY_VALUE_LENGTH:
            return None
        return value[: schema.SF_HISTORY_VALUE_LENGTH] if isinstance(value, str) else value

    def _sf_writable(self, sobject: str, action: str) -> None:
        if sobject in schema.SF_READ_ONLY_OBJECTS:
            raise SalesforceRecordError("INVALID_TYPE", f"entity type {sobject} does not support {action}")

    def sf_create(self, sobject: str, fields: Mapping[str, Any], *, source: str = "API",
                  created_at: float | None = None, user_id: str | None = None) -> str:
        """Create a record; raises SalesforceRecordError like the REST API would.

        `user_id`: the User making it (CreatedById, and the default owner); the API's session user when None.
        """
        with self.lock:
            self._sf_writable(sobject, "insert")
            clean = self._sf_coerce(sobject, fields, creating=True)
            self._sf_check_routing(sobject, clean, None)
            rid = self._sf_new_id(sobject)
            stamp = sf_datetime(created_at)
            rec: dict[str, Any] = {f: None for f in self.sf_fields[sobject]}
            for fname, fdef in self.sf_fields[sobject].items():
                if fdef["type"] == "boolean":
                    rec[fname] = False
            rec.update(clean)
            rec.update({"Id": rid, "CreatedDate": stamp, "LastModifiedDate": stamp, "SystemModstamp": stamp})
            if "OwnerId" in rec and rec["OwnerId"] is None and sobject != "User":
                rec["OwnerId"] = user_id or self.sf_default_owner
            if "CreatedById" in rec:
                rec["CreatedById"] = user_id or self.sf_default_owner
            for fname, fdef in self.sf_fields[sobject].items():
                if rec.get(fname) is None and fdef["type"] == "picklist" and fdef.get("defaultedOnCreate"):
                    rec[fname] = next((v["value"] for v in fdef["picklistValues"] if v.get("defaultValue")), None)
            if sobject == "Lead" and not rec.get("Status"):
                rec["Status"] = "Open - Not Contacted"
            if sobject == "User" and "IsActive" not in clean:
                rec["IsActive"] = True  # a new user is active until deactivated
            self._sf_derive(sobject, rec, stamp)
            self.sf_records[sobject][rid] = rec
            self._sf_record_history(sobject, rid, {}, rec, stamp, created=True, user_id=user_id)
            self._log_writes("salesforce", sobject, rid, clean, source)
            self._emit(Change("salesforce", sobject, rid, "created", dict(clean), source,
                              int((created_at or time.time()) * 1000)))
            return rid

    def sf_update(self, sobject: str, rid: str, fields: Mapping[str, Any], *, source: str = "API",
                  apply: bool = True, at: float | None = None, user_id: str | None = None) -> dict[str, Any]:
        """Update one record (or only validate it when apply=False); returns the cleaned values.

        `at` (in-process callers only): when the change happened, for LastModifiedDate and its History rows.
        """
        with self.lock:
            self._sf_writable(sobject, "update")
            rid = self.sf_normalise_id(sobject, rid)
            rec = self.sf_records[sobject].get(rid)
            if rec is None:
                raise SalesforceRecordError("ENTITY_IS_DELETED", "entity is deleted", [], http_status=404)
            clean = self._sf_coerce(sobject, fields, creating=False)
            self._sf_check_routing(sobject, clean, rid)
            if not apply:
                return clean
            changed = {k: v for k, v in clean.items() if rec.get(k) != v}
            before = dict(rec)
            rec.update(clean)
            stamp = sf_datetime(at)
            rec["LastModifiedDate"] = rec["SystemModstamp"] = stamp
            self._sf_derive(sobject, rec, stamp)
            self._sf_record_history(sobject, rid, before, rec, stamp, user_id=user_id)
            self._log_writes("salesforce", sobject, rid, clean, source)
            if changed:
                self._emit(Change("salesforce", sobject, rid, "property_change", changed, source,
                                  int(at * 1000) if at is not None else _now_ms()))
            return clean

    def _sf_check_routing(self, sobject: str, values: Mapping[str, Any], rid: str | None) -> None:
        try:
            check_salesforce_routing(self.sf_records, sobject, values, rid)
        except SalesforceRoutingError as exc:
            raise SalesforceRecordError(exc.code, exc.message, exc.fields) from None

    def sf_find(self, sobject: str, field_name: str, value: str) -> list[dict[str, Any]]:
        """Copies of the records whose `field_name` holds `value` (an external id lookup)."""
        with self.lock:
            return [dict(r) for r in self.sf_records[sobject].values() if str(r.get(field_name)) == value]

    def sf_system_update(self, sobject: str, rid: str, fields: Mapping[str, Any], *, source: str = "CRM_UI") -> None:
        """Set fields as the platform itself would (read-only fields such as IsConverted included)."""
        with self.lock:
            rec = self.sf_records[sobject][rid]
            changed = {k: v for k, v in fields.items() if rec.get(k) != v}
            before = dict(rec)
            rec.update(fields)
            rec["LastModifiedDate"] = rec["SystemModstamp"] = stamp = sf_datetime()
            self._sf_derive(sobject, rec, stamp)
            self._sf_record_history(sobject, rid, before, rec, stamp)
            self._log_writes("salesforce", sobject, rid, fields, source)
            if changed:
                self._emit(Change("salesforce", sobject, rid, "property_change", changed, source, _now_ms()))

    def sf_convert_lead(self, lead_id: str, *, won: bool | None, amount: float = 10000.0,
                        source: str = "CRM_UI") -> dict[str, str]:
        """Convert a Lead into Account + Contact (+ Opportunity, closed won/lost when `won` is not None)."""
        with self.lock:
            lead = self.sf_records["Lead"][lead_id]
            account_id = self.sf_create("Account", {"Name": lead.get("Company") or "Unknown",
                                                    "Industry": lead.get("Industry"),
                                                    "NumberOfEmployees": lead.get("NumberOfEmployees"),
                                                    "BillingCountry": lead.get("Country")}, source=source)
            contact_id = self.sf_create("Contact", {"FirstName": lead.get("FirstName"), "LastName": lead.get("LastName"),
                                                    "Email": lead.get("Email"), "Title": lead.get("Title"),
                                                    "MailingCountry": lead.get("Country"), "AccountId": account_id},
                                        source=source)
            out = {"AccountId": account_id, "ContactId": contact_id}
            conv: dict[str, Any] = {"IsConverted": True, "Status": "Closed - Converted",
                                    "ConvertedDate": datetime.now(UTC).date().isoformat(),
                                    "ConvertedAccountId": account_id, "ConvertedContactId": contact_id}
            if won is not None:
                opp_id = self.sf_create("Opportunity", {
                    "Name": f"{lead.get('Company') or 'Deal'} - new business", "AccountId": account_id,
                    "ContactId": contact_id, "StageName": "Closed Won" if won else "Closed Lost", "Amount": amount,
                    "CloseDate": datetime.now(UTC).date().isoformat()}, source=source)
                conv["ConvertedOpportunityId"] = opp_id
                out["OpportunityId"] = opp_id
                # Conversion makes the new Contact the opportunity's primary contact role.
                self.sf_create("OpportunityContactRole", {"OpportunityId": opp_id, "ContactId": contact_id,
                                                          "IsPrimary": True}, source=source)
            self.sf_system_update("Lead", lead_id, conv, source=source)
            return out

    def sf_get(self, sobject: str, rid: str) -> dict[str, Any] | None:
        """Return a copy of one record or None."""
        with self.lock:
            try:
                rid = self.sf_normalise_id(sobject, rid)
            except SalesforceRecordError:
                return None
            rec = self.sf_records[sobject].get(rid)
            return dict(rec) if rec is not None else None

    def sf_add_field(self, sobject: str, name: str, type_: str, label: str, *, length: int = 0, precision: int = 0,
                     scale: int = 0, picklist: list[dict[str, Any]] | None = None,
                     restricted: bool = False, external_id: bool = False, unique: bool = False) -> dict[str, Any]:
        """Add a custom field to an sObject (what a Tooling/Metadata API deploy does); `picklist` as describe shows it."""
        with self.lock:
            if not name.endswith("__c"):
                raise SalesforceRecordError("INVALID_FIELD", f"Custom field names must end with __c: {name}", [name])
            if self.sf_field(sobject, name) is not None:
                raise SalesforceRecordError("DUPLICATE_DEVELOPER_NAME",
                                            f"There is already a field named {name} on {sobject}.", [name])
            fdef = schema._sf_field(name, type_, label, length=length, precision=precision, scale=scale, custom=True)
            fdef["defaultedOnCreate"] = type_ == "boolean"  # a checkbox starts unchecked
            # An External ID field is indexed and idLookup: upserts and GETs can name a record by it.
            fdef.update({"externalId": external_id, "unique": unique, "idLookup": external_id or fdef["idLookup"]})
            if picklist:
                fdef["picklistValues"] = [dict(v) for v in picklist]
                fdef["restrictedPicklist"] = restricted
            self.sf_fields[sobject][name] = fdef
            default = False if type_ == "boolean" else None
            for rec in self.sf_records[sobject].values():
                rec[name] = default
            return dict(fdef)

    def sf_describe(self, sobject: str, version: str) -> dict[str, Any]:
        """Return an sObject describe in the REST shape."""
        with self.lock:
            label, plural = schema.SF_LABELS.get(sobject, (sobject, sobject))
            base = f"/services/data/v{version}/sobjects/{sobject}"
            writable = sobject not in schema.SF_READ_ONLY_OBJECTS  # History rows are written by the platform only
            return {
                "name": sobject, "label": label, "labelPlural": plural, "keyPrefix": SF_KEY_PREFIXES.get(sobject),
                "custom": False, "queryable": True, "updateable": writable, "createable": writable, "deletable": True,
                "fields": [dict(f) for f in self.sf_fields[sobject].values()],
                "urls": {"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}"},
            }
