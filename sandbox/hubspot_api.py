"""HubSpot CRM v3/v4 endpoints of the sandbox, shaped so hubspot-api-client 12 parses them unchanged."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, g, request

from sandbox import schema
from sandbox.control import retry_after_header
from sandbox.crm_actions import required_scopes
from sandbox.current import current_sandbox
from sandbox.ids import correlation_id, iso_ms
from sandbox.store import HubSpotValidationError, SandboxStore, hs_to_ms

bp = Blueprint("sandbox_hubspot", __name__)
T = TypeVar("T")

BATCH_LIMIT = 100
# Sandbox-only (no HubSpot equivalent): a replay of history sets when a record change happened. The value (epoch
# milliseconds or ISO 8601) becomes the record's createdate/lastmodifieddate and the webhook events' occurredAt, so
# bench/replay.py can backdate a CSV's rows and their outcomes without waiting. Requests without it use the clock.
CLOCK_HEADER = "X-Sandbox-Time"
SEARCH_OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY",
                    "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}



def hs_error(status: int, message: str, category: str, **extra: Any) -> Response:
    """Answer with HubSpot's standard error body."""
    body: dict[str, Any] = {"status": "error", "message": message, "correlationId": correlation_id(),
                            "category": category}
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(json.dumps(body), status=status, content_type="application/json;charset=utf-8")


def _validation_response(exc: HubSpotValidationError) -> Response:
    return hs_error(exc.status, exc.message, exc.category, errors=exc.errors or None, context=exc.context or None,
                    subCategory="PropertyCreateError.PROPERTY_EXISTS" if exc.category == "OBJECT_ALREADY_EXISTS" else None)


@bp.errorhandler(HubSpotValidationError)
def validation_error(exc: HubSpotValidationError) -> Response:
    """Answer a store validation failure raised inside any route with HubSpot's error body."""
    return _validation_response(exc)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json;charset=utf-8")


# The request readers below stop the view with abort(<error response>) rather than returning it, so each route
# reads its inputs in one line; Flask still runs the after_request hooks (rate-limit headers, request log).
def _body() -> dict[str, Any]:
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        abort(hs_error(400, f"Invalid input JSON on line {getattr(exc, 'lineno', 1)}: {exc}", "VALIDATION_ERROR"))
    if not isinstance(data, dict):
        abort(hs_error(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR"))
    return data


def _clock() -> float | None:
    """The instant a sandbox-only X-Sandbox-Time header sets for this request's changes (None: now); 400 if bad."""
    raw = request.headers.get(CLOCK_HEADER)
    if raw is None:
        return None
    at = hs_to_ms(raw.strip())
    if at is None:
        abort(hs_error(400, f"{CLOCK_HEADER} must be epoch milliseconds or an ISO 8601 time, not {raw[:40]!r}",
                       "VALIDATION_ERROR"))
    if at / 1000.0 > time.time() + 60:
        abort(hs_error(400, f"{CLOCK_HEADER} is in the future; a replay can only move changes back in time",
                       "VALIDATION_ERROR"))
    return at / 1000.0


def _properties(data: dict[str, Any]) -> dict[str, Any]:
    props = data.get("properties")
    if not isinstance(props, dict):
        abort(hs_error(400, "Invalid input JSON: properties is required and must be an object", "VALIDATION_ERROR"))
    return props


def _found(value: T | None, message: str) -> T:
    if value is None:
        abort(hs_error(404, message, "OBJECT_NOT_FOUND"))
    return value


def _otype(name: str) -> str:
    otype = current_sandbox().store.hs_type(name)
    if otype is None:
        abort(hs_error(400, f"Unable to infer object type from: {name}", "VALIDATION_ERROR"))
    return otype


def _flag(name: str) -> bool:
    return request.args.get(name, "false").lower() == "true"


def _multi(name: str) -> list[str]:
    """Read a multi-valued query parameter (repeated keys, or comma-separated)."""
    out: list[str] = []
    for value in request.args.getlist(name):
        out.extend(v for v in value.split(",") if v)
    return out


def _shape(otype: str, obj: dict[str, Any], props: list[str] | None, with_history: list[str] | None = None) -> dict[str, Any]:
    """Render a stored record the way the v3 objects API does."""
    wanted = list(props) if props else list(schema.HS_DEFAULT_READ[otype])
    always = [schema.HS_CREATED_PROPERTY[otype], "hs_object_id", schema.HS_MODIFIED_PROPERTY[otype]]
    # A property the portal does not define is left out of the answer; a defined one without a value is null.
    defined = current_sandbox().store.hs_properties[otype]
    out_props = {p: obj["properties"].get(p) for p in dict.fromkeys(wanted + always)
                 if p in defined or p in obj["properties"]}
    shaped: dict[str, Any] = {"id": obj["id"], "properties": out_props, "createdAt": obj["createdAt"],
                              "updatedAt": obj["updatedAt"], "archived": obj["archived"]}
    if obj.get("archivedAt"):
        shaped["archivedAt"] = obj["archivedAt"]
    if with_history:
        # Each property's values as they were set, newest first: {value, timestamp, sourceType}.
        store = current_sandbox().store
        shaped["propertiesWithHistory"] = {p: store.hs_history(obj, p) for p in dict.fromkeys(with_history)
                                           if p in obj["properties"] or p in store.hs_properties[otype]}
    return shaped


def _with_associations(otype: str, obj: dict[str, Any], assoc_types: list[str]) -> dict[str, Any]:
    store = current_sandbox().store
    out: dict[str, Any] = {}
    for name in assoc_types:
        ttype = store.hs_type(name)
        if ttype is None:
            continue
        results = []
        for tid, type_ids in store.hs_associations(otype, obj["id"], ttype):
            base = f"{schema.HS_SINGULAR[otype]}_to_{schema.HS_SINGULAR[ttype]}"
            default, primary = schema.HS_ASSOC_TYPE_IDS.get((otype, ttype), (0, None))
            if primary is not None and primary in type_ids:
                results.append({"id": tid, "type": base})
            results.append({"id": tid, "type": base + "_unlabeled"})
        if results:
            out[ttype] = {"results": results}
    return out


# ---------------------------------------------------------------------------------------------- auth + limits
@bp.before_request
def authenticate_and_limit() -> Response | None:
    """401 without a known private-app token; 429 past the rolling 10 s (and search per-second) limits."""
    sandbox = current_sandbox()
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not token or token not in sandbox.config.hubspot_tokens:
        return hs_error(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
                        "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                        "INVALID_AUTHENTICATION")
    g.sandbox_token = hashlib.sha256(token.encode()).hexdigest()[:10]
    missing = [s for s in required_scopes(request.method, request.path) if s in sandbox.config.hubspot_revoked_scopes]
    if missing:  # a scope the test (or an admin) took from the app: HubSpot's 403 names what is required
        return hs_error(403, "This app hasn't been granted all required scopes to make this call. Read more about "
                        "required scopes here: https://developers.hubspot.com/scopes.", "MISSING_SCOPES",
                        errors=[{"message": "One or more of the following scopes are required.",
                                 "context": {"requiredGranularScopes": missing}}],
                        links={"scopes": "https://developers.hubspot.com/scopes"})
    if request.path.endswith("/search"):
        ok, _, wait = sandbox.hs_search_limiter.hit(token)
        if not ok:
            g.hs_limit = (sandbox.hs_limiter.max_requests, 0)
            return _rate_limited(wait, "SECONDLY", "You have reached your secondly limit.", token)
    ok, remaining, wait = sandbox.hs_limiter.hit(token)
    g.hs_limit = (sandbox.hs_limiter.max_requests, remaining)
    if not ok:
        return _rate_limited(wait, "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.", token)
    return None


def _rate_limited(wait: float, policy: str, message: str, token: str) -> Response:
    group = "publicapi:private-app-api-calls-ten-secondly:" + hashlib.sha256(token.encode()).hexdigest()[:7]
    body = {"status": "error", "message": message, "errorType": "RATE_LIMIT", "correlationId": correlation_id(),
            "policyName": policy, "groupName": group}
    resp = Response(json.dumps(body), status=429, content_type="application/json;charset=utf-8")
    resp.headers["Retry-After"] = retry_after_header(wait)
    return resp


@bp.after_request
def add_rate_limit_headers(resp: Response) -> Response:
    """HubSpot sends its rate-limit headers on every response, not only on 429."""
    limit = getattr(g, "hs_limit", None)
    if limit is not None:
        sandbox = current_sandbox()
        resp.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(int(sandbox.hs_limiter.window * 1000))
        resp.headers["X-HubSpot-RateLimit-Max"] = str(limit[0])
        resp.headers["X-HubSpot-RateLimit-Remaining"] = str(limit[1] if resp.status_code != 429 else 0)
        resp.headers["X-HubSpot-RateLimit-Daily"] = str(sandbox.config.hubspot_daily_limit)
        resp.headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, sandbox.config.hubspot_daily_limit
                                                                       - sandbox.hs_daily_count()))
    return resp


# ---------------------------------------------------------------------------------------------- objects
@bp.route("/crm/v3/objects/<object_type>", methods=["GET"])
def list_objects(object_type: str) -> Response:
    """One page of records, ordered by id; `paging.next.after` while more exist."""
    otype = _otype(object_type)
    try:
        limit = int(request.args.get("limit", "10"))
    except ValueError:
        return hs_error(400, "limit must be an integer", "VALIDATION_ERROR")
    # With propertiesWithHistory a page holds at most 50 records.
    most = 50 if _multi("propertiesWithHistory") else 100
    if not 1 <= limit <= most:
        return hs_error(400, f"limit must be between 1 and {most}", "VALIDATION_ERROR")
    after = request.args.get("after") or None
    if after is not None and not after.isdigit():
        return hs_error(400, f"Invalid paging cursor: {after}", "VALIDATION_ERROR")
    objs, nxt = current_sandbox().store.hs_list(otype, after, limit, archived=_flag("archived"))
    props, assocs = _multi("properties"), _multi("associations")
    results = []
    for obj in objs:
        shaped = _shape(otype, obj, props, _multi("propertiesWithHistory"))
        if assocs:
            linked = _with_associations(otype, obj, assocs)
            if linked:
                shaped["associations"] = linked
        results.append(shaped)
    body: dict[str, Any] = {"results": results}
    if nxt is not None:
        body["paging"] = {"next": {"after": nxt, "link": f"{request.host_url}crm/v3/objects/{otype}?after={nxt}"}}
    return _json(body)


def _app_user() -> str:
    """The HubSpot user id a private-app token acts as (what it creates shows this user as its creator)."""
    return str(current_sandbox().config.hubspot_app_user_id)


def _create_associations(otype: str, data: dict[str, Any]) -> list[tuple[str, str, list[int] | None]]:
    """The (to type, to id, type ids) a create's `associations` ask for; 400 when a target cannot be found.

    The association type id names the target's object type (194: call to contact); without types, the first
    object type holding a record with that id is taken.
    """
    store = current_sandbox().store
    links: list[tuple[str, str, list[int] | None]] = []
    for assoc in data.get("associations") or []:
        to_id = str(((assoc or {}).get("to") or {}).get("id", ""))
        types = [int(t["associationTypeId"]) for t in assoc.get("types") or [] if t.get("associationTypeId")]
        named = [t for (f, t), ids in schema.HS_ASSOC_TYPE_IDS.items() if f == otype and set(types) & set(ids)]
        candidates = named or [t for t in schema.HS_OBJECT_TYPES if t != otype]
        ttype = next((t for t in candidates if store.hs_get(t, to_id) is not None), None)
        if ttype is None:
            abort(hs_error(400, f"Could not create associations: no object with id {to_id} to associate "
                           f"{schema.HS_SINGULAR[otype]} with", "VALIDATION_ERROR", context={"toObjectId": [to_id]}))
        links.append((ttype, to_id, types or None))
    return links


@bp.route("/crm/v3/objects/<object_type>", methods=["POST"])
def create_object(object_type: str) -> Response:
    """Create one record (201), with the associations the body asks for."""
    otype = _otype(object_type)
    data = _body()
    props = _properties(data)
    store = current_sandbox().store
    with store.lock:
        links = _create_associations(otype, data)
        obj = store.hs_create(otype, props, source="API", created_at=_clock(), user_id=_app_user())
        for ttype, to_id, types in links:
            store.hs_associate(otype, obj["id"], ttype, to_id, types)
    return _json(_shape(otype, obj, list(props)), 201)


@bp.route("/crm/v3/objects/<object_type>/<object_id>", methods=["GET"])
def get_object(object_type: str, object_id: str) -> Response:
    """Read one record, optionally by a unique property (idProperty) and with associations."""
    otype = _otype(object_type)
    store = current_sandbox().store
    rid = store.hs_resolve_id(otype, object_id, request.args.get("idProperty"))
    obj = _found(store.hs_get(otype, rid) if rid else None, "resource not found")
    shaped = _shape(otype, obj, _multi("properties"), _multi("propertiesWithHistory"))
    assocs = _multi("associations")
    if assocs:
        linked = _with_associations(otype, obj, assocs)
        if linked:
            shaped["associations"] = linked
    return _json(shaped)


@bp.route("/crm/v3/objects/<object_type>/<object_id>", methods=["PATCH"])
def update_object(object_type: str, object_id: str) -> Response:
    """Update one record's properties (200 with the record)."""
    otype = _otype(object_type)
    data = _body()
    props = _properties(data)
    store = current_sandbox().store
    rid = _found(store.hs_resolve_id(otype, object_id, request.args.get("idProperty")), "resource not found")
    obj = store.hs_update(otype, rid, props, source="API", at=_clock(), user_id=_app_user())
    return _json(_shape(otype, obj, list(props)))


@bp.route("/crm/v3/objects/<object_type>/<object_id>", methods=["DELETE"])
def archive_object(object_type: str, object_id: str) -> Response:
    """Archive one record (204, also when it does not exist, as HubSpot does)."""
    otype = _otype(object_type)
    current_sandbox().store.hs_archive(otype, object_id)
    return Response(status=204)


def _batch_inputs(data: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        abort(hs_error(400, "Invalid input JSON: inputs is required and must be a list of objects", "VALIDATION_ERROR"))
    if len(inputs) > BATCH_LIMIT:
        abort(hs_error(400, f"Batch input must contain no more than {BATCH_LIMIT} inputs, but contained {len(inputs)}.",
                       "VALIDATION_ERROR", context={"inputs": [str(len(inputs))]},
                       errors=[{"message": f"size must be between 1 and {BATCH_LIMIT}", "in": "inputs",
                                "code": "INVALID_SIZE"}]))
    if not inputs:
        abort(hs_error(400, "Batch input must contain at least 1 input.", "VALIDATION_ERROR",
                       errors=[{"message": f"size must be between 1 and {BATCH_LIMIT}", "in": "inputs",
                                "code": "INVALID_SIZE"}]))
    return inputs


@dataclass(frozen=True)
class BatchCall:
    """A v3 batch call: when it started, its object type, body and inputs, and the store it works on."""

    started: float
    otype: str
    data: dict[str, Any]
    inputs: list[dict[str, Any]]
    store: SandboxStore


def _batch_request(object_type: str) -> BatchCall:
    """The v3 batch call being served, its object type, body and inputs each checked in that order."""
    started = time.time()
    otype = _otype(object_type)
    data = _body()
    return BatchCall(started, otype, data, _batch_inputs(data), current_sandbox().store)


def _batch_response(results: list[dict[str, Any]], missing: list[str], otype: str, started: float,
                    status: int = 200) -> Response:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "requestedAt": iso_ms(started),
                            "startedAt": iso_ms(started), "completedAt": iso_ms(), "links": {}}
    if not missing:
        return _json(body, status)
    label = schema.HS_SINGULAR[otype].upper()
    body["numErrors"] = 1
    body["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                       "message": f"Could not get some {label} objects, they may be deleted or not exist. "
                                  f"Check that ids are valid.",
                       "context": {"ids": missing}, "errors": [], "links": {}, "subCategory": None}]
    return _json(body, 207)


@bp.route("/crm/v3/objects/<object_type>/batch/read", methods=["POST"])
def batch_read(object_type: str) -> Response:
    """Read up to 100 records by id or unique property; 207 lists the ids not found."""
    call = _batch_request(object_type)
    started, otype, data, inputs, store = call.started, call.otype, call.data, call.inputs, call.store
    props = data.get("properties") or []
    id_prop = data.get("idProperty")
    results, missing = [], []
    seen: set[str] = set()
    for item in inputs:
        ident = str(item.get("id", ""))
        rid = store.hs_resolve_id(otype, ident, id_prop)
        obj = store.hs_get(otype, rid) if rid else None
        if obj is None:
            missing.append(ident)
        elif rid not in seen:
            seen.add(rid)
            results.append(_shape(otype, obj, props, data.get("propertiesWithHistory") or None))
    return _batch_response(results, missing, otype, started)


@bp.route("/crm/v3/objects/<object_type>/batch/update", methods=["POST"])
def batch_update(object_type: str) -> Response:
    """Update up to 100 records; invalid property values fail the whole batch, unknown ids come back as 207."""
    call = _batch_request(object_type)
    started, otype, data, inputs, store = call.started, call.otype, call.data, call.inputs, call.store
    ids = [str(i.get("id", "")) for i in inputs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        return hs_error(400, f"Duplicate IDs found in batch input: {dupes}. IDs must be unique", "VALIDATION_ERROR",
                        context={"ids": dupes})
    for item in inputs:
        if not isinstance(item.get("properties"), dict):
            return hs_error(400, "Invalid input JSON: every input needs id and properties", "VALIDATION_ERROR")
    results, missing = [], []
    at = _clock()
    with store.lock:
        resolved = [(item, store.hs_resolve_id(otype, str(item.get("id", "")), item.get("idProperty"))) for item in inputs]
        # Validate everything first so a bad value leaves nothing half-written, as HubSpot's batch does.
        for item, rid in resolved:
            if rid is not None:
                store._hs_validate(otype, item["properties"], creating=False)
        for item, rid in resolved:
            if rid is None:
                missing.append(str(item.get("id", "")))
                continue
            obj = store.hs_update(otype, rid, item["properties"], source="API", at=at, user_id=_app_user())
            results.append(_shape(otype, obj, list(item["properties"])))
    return _batch_response(results, missing, otype, started)


@bp.route("/crm/v3/objects/<object_type>/batch/create", methods=["POST"])
def batch_create(object_type: str) -> Response:
    """Create up to 100 records (201); any invalid input fails the batch."""
    call = _batch_request(object_type)
    started, otype, data, inputs, store = call.started, call.otype, call.data, call.inputs, call.store
    results = []
    at = _clock()
    with store.lock:
        links = []
        for item in inputs:
            if not isinstance(item.get("properties"), dict):
                return hs_error(400, "Invalid input JSON: every input needs properties", "VALIDATION_ERROR")
            store._hs_validate(otype, item["properties"], creating=True)
            links.append(_create_associations(otype, item))
        for item, item_links in zip(inputs, links):
            obj = store.hs_create(otype, item["properties"], source="API", created_at=at, user_id=_app_user())
            for ttype, to_id, types in item_links:
                store.hs_associate(otype, obj["id"], ttype, to_id, types)
            results.append(_shape(otype, obj, list(item["properties"])))
    return _batch_response(results, [], otype, started, 201)


@bp.route("/crm/v3/objects/<object_type>/batch/archive", methods=["POST"])
def batch_archive(object_type: str) -> Response:
    """Archive up to 100 records (204)."""
    call = _batch_request(object_type)
    otype, inputs = call.otype, call.inputs
    for item in inputs:
        current_sandbox().store.hs_archive(otype, str(item.get("id", "")))
    return Response(status=204)


@bp.route("/crm/v3/objects/<object_type>/search", methods=["POST"])
def search(object_type: str) -> Response:
    """CRM search: filter groups (ORed) of filters (ANDed), sorts, paging; limits as in HUBSPOT.md §1.7."""
    otype = _otype(object_type)
    data = _body()
    groups = data.get("filterGroups") or []
    if not isinstance(groups, list) or len(groups) > 5:
        return hs_error(400, "There was a problem with the request. Up to 5 filterGroups are allowed.",
                        "VALIDATION_ERROR")
    total_filters = 0
    defs = current_sandbox().store.hs_prop_defs(otype)
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            return hs_error(400, "Invalid input JSON: every filterGroup needs a filters list", "VALIDATION_ERROR")
        if len(filters) > 10:
            return hs_error(400, "There was a problem with the request. Up to 10 filters are allowed per filterGroup.",
                            "VALIDATION_ERROR")
        total_filters += len(filters)
        for flt in filters:
            op = flt.get("operator")
            name = flt.get("propertyName")
            if op not in SEARCH_OPERATORS:
                return hs_error(400, f"Invalid input JSON: operator {op!r} is not one of {sorted(SEARCH_OPERATORS)}",
                                "VALIDATION_ERROR")
            if name not in defs:
                return hs_error(400, f"There was a problem with the request. Property '{name}' does not exist.",
                                "VALIDATION_ERROR", context={"propertyName": [str(name)]})
            if op in ("IN", "NOT_IN") and not isinstance(flt.get("values"), list):
                return hs_error(400, f"Operator {op} requires 'values'", "VALIDATION_ERROR")
    if total_filters > 25:
        return hs_error(400, "There was a problem with the request. Up to 25 filters are allowed in total.",
                        "VALIDATION_ERROR")
    try:
        limit = int(data.get("limit") or 10)
        after = int(data.get("after") or 0)
    except (TypeError, ValueError):
        return hs_error(400, "limit and after must be integers", "VALIDATION_ERROR")
    if not 1 <= limit <= 200:
        return hs_error(400, "limit must be between 1 and 200", "VALIDATION_ERROR")
    if after + limit > 10000:
        return hs_error(400, "Search results are limited to 10,000 rows; narrow the filters.", "VALIDATION_ERROR")
    total, page, nxt = current_sandbox().store.hs_search(otype, groups, data.get("sorts") or [], data.get("query"), after, limit)
    body: dict[str, Any] = {"total": total, "results": [_shape(otype, o, data.get("properties") or []) for o in page]}
    if nxt is not None:
        body["paging"] = {"next": {"after": str(nxt)}}
    return _json(body)


# ---------------------------------------------------------------------------------------------- properties
def _registry_routes(kind: str, one: str, base: str, noun: str,
                     registry: Callable[[SandboxStore], dict[str, dict[str, Any]]],
                     create: Callable[[SandboxStore, str, dict[str, Any]], dict[str, Any]]) -> None:
    """Register list (GET base), create (POST base, 201) and read-one (GET base/<name>) over a registry."""

    def list_all(object_type: str) -> Response:
        """Every definition of an object type."""
        otype = _otype(object_type)
        store = current_sandbox().store
        with store.lock:
            results = [dict(d) for d in registry(store)[otype].values()]
        return _json({"results": results})

    def create_one(object_type: str) -> Response:
        """Create a definition (201); 409 when the name exists."""
        otype = _otype(object_type)
        data = _body()
        return _json(create(current_sandbox().store, otype, data), 201)

    def get_one(object_type: str, name: str) -> Response:
        """One definition by name."""
        otype = _otype(object_type)
        defs = registry(current_sandbox().store)[otype]
        return _json(_found(defs.get(name), f"Unable to find {noun} with name: {name}"))

    bp.add_url_rule(base, f"list_{kind}", list_all, methods=["GET"])
    bp.add_url_rule(base, f"create_{one}", create_one, methods=["POST"])
    bp.add_url_rule(f"{base}/<name>", f"get_{one}", get_one, methods=["GET"])


# Properties and property groups: the same list / create / read-one surface over two registries.
_registry_routes("properties", "property", "/crm/v3/properties/<object_type>", "property",
                 lambda store: store.hs_properties,
                 lambda store, otype, body: store.hs_create_property(otype, body))
_registry_routes("groups", "group", "/crm/v3/properties/<object_type>/groups", "property group",
                 lambda store: store.hs_groups,
                 lambda store, otype, body: store.hs_create_group(otype, body))


@bp.route("/crm/v3/properties/<object_type>/<name>", methods=["PATCH"])
def update_property(object_type: str, name: str) -> Response:
    """Patch a property's definition."""
    otype = _otype(object_type)
    data = _body()
    try:
        return _json(current_sandbox().store.hs_update_property(otype, name, data))
    except KeyError:
        return hs_error(404, f"Unable to find property with name: {name}", "OBJECT_NOT_FOUND")


@bp.route("/crm/v3/properties/<object_type>/<name>", methods=["DELETE"])
def archive_property(object_type: str, name: str) -> Response:
    """Delete a custom property (204)."""
    otype = _otype(object_type)
    store = current_sandbox().store
    with store.lock:
        prop = _found(store.hs_properties[otype].get(name), f"Unable to find property with name: {name}")
        if prop["hubspotDefined"]:
            return hs_error(400, f"Property '{name}' is HubSpot-defined and cannot be archived.", "VALIDATION_ERROR")
        del store.hs_properties[otype][name]
    return Response(status=204)


@bp.route("/crm/v3/properties/<object_type>/batch/read", methods=["POST"])
def batch_read_properties(object_type: str) -> Response:
    """Read several properties by name."""
    otype = _otype(object_type)
    data = _body()
    names = [str(i.get("name", "")) for i in data.get("inputs") or []]
    defs = current_sandbox().store.hs_properties[otype]
    started = time.time()
    body: dict[str, Any] = {"status": "COMPLETE", "results": [defs[n] for n in names if n in defs],
                            "startedAt": iso_ms(started), "completedAt": iso_ms()}
    missing = [n for n in names if n not in defs]
    if missing:
        body["numErrors"] = len(missing)
        body["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": f"Unable to find property {n}",
                           "context": {"name": [n]}, "errors": [], "links": {}} for n in missing]
        return _json(body, 207)
    return _json(body)


@bp.route("/crm/v3/properties/<object_type>/batch/create", methods=["POST"])
def batch_create_properties(object_type: str) -> Response:
    """Create several properties; existing names are reported as errors (207)."""
    otype = _otype(object_type)
    data = _body()
    started = time.time()
    results, errors = [], []
    for item in data.get("inputs") or []:
        try:
            results.append(current_sandbox().store.hs_create_property(otype, item))
        except HubSpotValidationError as exc:
            errors.append({"status": "error", "category": exc.category, "message": exc.message,
                           "context": exc.context, "errors": [], "links": {}})
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": iso_ms(started),
                            "completedAt": iso_ms()}
    if errors:
        body.update({"numErrors": len(errors), "errors": errors})
        return _json(body, 207)
    return _json(body, 201)


# ---------------------------------------------------------------------------------------------- pipelines
def _pipeline() -> dict[str, Any]:
    stamp = "2024-01-01T00:00:00.000Z"
    return {"id": "default", "label": "Sales Pipeline", "displayOrder": 0, "archived": False, "createdAt": stamp,
            "updatedAt": stamp,
            "stages": [{"id": sid, "label": label, "displayOrder": i, "archived": False, "createdAt": stamp,
                        "updatedAt": stamp, "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                        "metadata": {"isClosed": closed, "probability": prob}}
                       for i, (sid, label, prob, closed) in enumerate(schema.DEAL_STAGES)]}


@bp.route("/crm/v3/pipelines/<object_type>", methods=["GET"])
def list_pipelines(object_type: str) -> Response:
    """Deal pipelines with their stages (closed / probability metadata)."""
    if current_sandbox().store.hs_type(object_type) != "deals":
        return hs_error(400, f"Object type {object_type} has no pipelines in the sandbox", "VALIDATION_ERROR")
    return _json({"results": [_pipeline()]})


@bp.route("/crm/v3/pipelines/<object_type>/<pipeline_id>", methods=["GET"])
def get_pipeline(object_type: str, pipeline_id: str) -> Response:
    """One pipeline by id."""
    if current_sandbox().store.hs_type(object_type) != "deals" or pipeline_id != "default":
        return hs_error(404, f"Unable to find pipeline {pipeline_id}", "OBJECT_NOT_FOUND")
    return _json(_pipeline())


# ---------------------------------------------------------------------------------------------- associations v4
def _assoc_pair(from_type: str, to_type: str) -> tuple[str, str]:
    store = current_sandbox().store
    ftype, ttype = store.hs_type(from_type), store.hs_type(to_type)
    if ftype is None or ttype is None:
        abort(hs_error(400, f"Unknown object type: {from_type if ftype is None else to_type}", "VALIDATION_ERROR"))
    return ftype, ttype


def _assoc_types(ftype: str, ttype: str, type_ids: list[int]) -> list[dict[str, Any]]:
    _, primary = schema.HS_ASSOC_TYPE_IDS.get((ftype, ttype), (0, None))
    return [{"category": "HUBSPOT_DEFINED", "typeId": tid, "label": "Primary" if tid == primary else None}
            for tid in type_ids]


@bp.route("/crm/v4/objects/<from_type>/<from_id>/associations/default/<to_type>/<to_id>", methods=["PUT"])
def assoc_create_default(from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
    """Associate two records with the default (unlabelled) type."""
    pair = _assoc_pair(from_type, to_type)
    started = time.time()
    try:
        current_sandbox().store.hs_associate(pair[0], from_id, pair[1], to_id)
    except KeyError as exc:
        return hs_error(404, f"No {pair[0] if exc.args[0] == from_id else pair[1]} with id {exc.args[0]}",
                        "OBJECT_NOT_FOUND")
    default, _ = schema.HS_ASSOC_TYPE_IDS.get(pair, (0, None))
    return _json({"status": "COMPLETE", "results": [{"associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                                                         "associationTypeId": default},
                                                     "from": {"id": from_id}, "to": {"id": to_id}}],
                  "startedAt": iso_ms(started), "completedAt": iso_ms()})


@bp.route("/crm/v4/objects/<from_type>/<from_id>/associations/<to_type>/<to_id>", methods=["PUT"])
def assoc_create_labelled(from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
    """Associate two records with explicit association types (201)."""
    pair = _assoc_pair(from_type, to_type)
    raw = request.get_data()
    try:
        specs = json.loads(raw or b"[]")
        type_ids = [int(s["associationTypeId"]) for s in specs]
    except (ValueError, TypeError, KeyError):
        return hs_error(400, "Invalid input JSON: expected [{associationCategory, associationTypeId}]", "VALIDATION_ERROR")
    try:
        ids = current_sandbox().store.hs_associate(pair[0], from_id, pair[1], to_id, type_ids)
    except KeyError as exc:
        return hs_error(404, f"No object with id {exc.args[0]}", "OBJECT_NOT_FOUND")
    return _json({"fromObjectTypeId": schema.HS_TYPE_IDS[pair[0]], "fromObjectId": int(from_id),
                  "toObjectTypeId": schema.HS_TYPE_IDS[pair[1]], "toObjectId": int(to_id),
                  "labels": ["Primary"] if any(t.get("label") for t in _assoc_types(*pair, ids)) else []}, 201)


@bp.route("/crm/v4/objects/<from_type>/<from_id>/associations/<to_type>", methods=["GET"])
def assoc_get_page(from_type: str, from_id: str, to_type: str) -> Response:
    """Associations of one record, paged."""
    pair = _assoc_pair(from_type, to_type)
    try:
        limit = min(500, int(request.args.get("limit", "500")))
        after = int(request.args.get("after") or 0)
    except ValueError:
        return hs_error(400, "limit and after must be integers", "VALIDATION_ERROR")
    links = current_sandbox().store.hs_associations(pair[0], from_id, pair[1])
    page = links[after : after + limit]
    body: dict[str, Any] = {"results": [{"toObjectId": int(tid), "associationTypes": _assoc_types(*pair, ids)}
                                        for tid, ids in page]}
    if after + limit < len(links):
        body["paging"] = {"next": {"after": str(after + limit)}}
    return _json(body)


@bp.route("/crm/v4/objects/<from_type>/<from_id>/associations/<to_type>/<to_id>", methods=["DELETE"])
def assoc_archive(from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
    """Remove every association between two records (204)."""
    pair = _assoc_pair(from_type, to_type)
    current_sandbox().store.hs_unassociate(pair[0], from_id, pair[1], to_id)
    return Response(status=204)


def _assoc_batch(from_type: str, to_type: str, types_of: Callable[[dict[str, Any]], list[int] | None],
                 entry: Callable[[tuple[str, str], str, str, list[int]], dict[str, Any]], status: int) -> Response:
    """Associate many pairs: each input's types (None: the default), and its result entry; 404 for an unknown record."""
    pair = _assoc_pair(from_type, to_type)
    inputs = _batch_inputs(_body())
    started = time.time()
    results = []
    for item in inputs:
        fid, tid = str(item["from"]["id"]), str(item["to"]["id"])
        type_ids = types_of(item)
        try:
            store_ids = current_sandbox().store.hs_associate(pair[0], fid, pair[1], tid, type_ids)
        except KeyError as exc:
            return hs_error(404, f"No object with id {exc.args[0]}", "OBJECT_NOT_FOUND")
        results.append(entry(pair, fid, tid, store_ids))
    return _json({"status": "COMPLETE", "results": results, "startedAt": iso_ms(started), "completedAt": iso_ms()},
                 status)


@bp.route("/crm/v4/associations/<from_type>/<to_type>/batch/associate/default", methods=["POST"])
def assoc_batch_default(from_type: str, to_type: str) -> Response:
    """Associate many pairs with the default type."""

    def entry(pair: tuple[str, str], fid: str, tid: str, _: list[int]) -> dict[str, Any]:
        default, _primary = schema.HS_ASSOC_TYPE_IDS.get(pair, (0, None))
        return {"associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": default},
                "from": {"id": fid}, "to": {"id": tid}}

    return _assoc_batch(from_type, to_type, lambda item: None, entry, 200)


@bp.route("/crm/v4/associations/<from_type>/<to_type>/batch/read", methods=["POST"])
def assoc_batch_read(from_type: str, to_type: str) -> Response:
    """Associations of many records; ids without any come back as 207 errors."""
    pair = _assoc_pair(from_type, to_type)
    data = _body()
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return hs_error(400, "Invalid input JSON: inputs is required", "VALIDATION_ERROR")
    if len(inputs) > 1000:
        return hs_error(400, "Batch input must contain no more than 1000 inputs.", "VALIDATION_ERROR")
    started = time.time()
    store = current_sandbox().store
    results, missing = [], []
    for item in inputs:
        fid = str(item.get("id", ""))
        links = store.hs_associations(pair[0], fid, pair[1])
        if not links:
            missing.append(fid)
            continue
        results.append({"from": {"id": fid}, "to": [{"toObjectId": int(tid), "associationTypes": _assoc_types(*pair, ids)}
                                                    for tid, ids in links]})
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": iso_ms(started),
                            "completedAt": iso_ms()}
    if missing:
        body["numErrors"] = len(missing)
        body["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                           "message": f"No {schema.HS_SINGULAR[pair[1]]} is associated with {schema.HS_SINGULAR[pair[0]]} {m}.",
                           "context": {"fromObjectId": [m]}, "errors": [], "links": {}} for m in missing]
        return _json(body, 207)
    return _json(body)


@bp.route("/crm/v4/associations/<from_type>/<to_type>/batch/create", methods=["POST"])
def assoc_batch_create(from_type: str, to_type: str) -> Response:
    """Associate many pairs with explicit types (201)."""

    def types_of(item: dict[str, Any]) -> list[int] | None:
        return [int(t["associationTypeId"]) for t in item.get("types") or []] or None

    def entry(pair: tuple[str, str], fid: str, tid: str, store_ids: list[int]) -> dict[str, Any]:
        return {"fromObjectTypeId": schema.HS_TYPE_IDS[pair[0]], "fromObjectId": int(fid),
                "toObjectTypeId": schema.HS_TYPE_IDS[pair[1]], "toObjectId": int(tid),
                "labels": [t["label"] for t in _assoc_types(*pair, store_ids) if t["label"]]}

    return _assoc_batch(from_type, to_type, types_of, entry, 201)
