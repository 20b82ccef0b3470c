"""Salesforce REST (and SOAP login) endpoints of the sandbox, shaped so simple-salesforce 1.12 works unchanged."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from flask import Blueprint, Response, abort, g, request

from sandbox import soql
from sandbox.current import current_sandbox
from sandbox.ids import sf_id18
from sandbox.store import SalesforceRecordError, SandboxStore

bp = Blueprint("sandbox_salesforce", __name__)

COLLECTION_LIMIT = 200
COLLECTION_CHUNK_LIMIT = 10
_VERSION = re.compile(r"^v(\d{2,3}\.\d)$")



def sf_error(status: int, error_code: str, message: str, fields: list[str] | None = None) -> Response:
    """Answer with Salesforce's error array."""
    item: dict[str, Any] = {"message": message, "errorCode": error_code}
    if fields:
        item["fields"] = fields
    return Response(json.dumps([item]), status=status, content_type="application/json;charset=UTF-8")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json;charset=UTF-8")


def _version(ver: str) -> str | None:
    m = _VERSION.match(ver)
    return m.group(1) if m else None


# The request readers below stop the view with abort(<error response>) rather than returning it, so each route
# reads its inputs in one line; Flask still runs the after_request hooks (limit info, request log) on it.
def _sobject(name: str) -> str:
    sobject = current_sandbox().store.sf_sobject(name)
    if sobject is None:
        abort(sf_error(404, "NOT_FOUND", "The requested resource does not exist"))
    return sobject


def _json_body() -> Any:
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        abort(sf_error(400, "JSON_PARSER_ERROR", f"Unexpected character: was expecting JSON: {exc}"))


# ---------------------------------------------------------------------------------------------- auth + budget
@bp.before_request
def authenticate_and_count() -> Response | None:
    """401 INVALID_SESSION_ID for an unknown session; 403 REQUEST_LIMIT_EXCEEDED past the daily budget."""
    path = request.path
    if not path.startswith("/services/data/") or path.rstrip("/") == "/services/data":
        return None
    sandbox = current_sandbox()
    header = request.headers.get("Authorization", "")
    token = header.split(" ", 1)[1].strip() if header.lower().startswith(("bearer ", "oauth ")) else ""
    if not token or token not in sandbox.sf_sessions:
        return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
    g.sandbox_token = hashlib.sha256(token.encode()).hexdigest()[:10]
    used, limit, over = sandbox.store.sf_count_api_call()
    g.sf_usage = (used, limit)
    if over:
        return sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    return None


@bp.after_request
def add_limit_info(resp: Response) -> Response:
    """Sforce-Limit-Info on every 2xx REST answer (the SDK reads it only below 300)."""
    usage = getattr(g, "sf_usage", None)
    if usage is not None and resp.status_code < 300:
        resp.headers["Sforce-Limit-Info"] = f"api-usage={usage[0]}/{usage[1]}"
    return resp


# ---------------------------------------------------------------------------------------------- discovery
@bp.route("/services/data", methods=["GET"], strict_slashes=False)
def versions() -> Response:
    """API versions the sandbox answers."""
    return _json([{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in ("57.0", "58.0", "59.0", "60.0")])


@bp.route("/services/data/<ver>", methods=["GET"], strict_slashes=False)
def resources(ver: str) -> Response:
    """Resources of one API version."""
    v = _version(ver)
    if v is None:
        return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
    base = f"/services/data/v{v}"
    return _json({"sobjects": f"{base}/sobjects", "query": f"{base}/query", "queryAll": f"{base}/queryAll",
                  "limits": f"{base}/limits", "composite": f"{base}/composite", "tooling": f"{base}/tooling"})


@bp.route("/services/data/<ver>/limits", methods=["GET"], strict_slashes=False)
def limits(ver: str) -> Response:
    """Org limits; DailyApiRequests tracks the sandbox's rolling daily counter."""
    store = current_sandbox().store
    used, limit = getattr(g, "sf_usage", (store.sf_api_used, store.sf_daily_api_max))
    return _json({"DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
                  "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                  "DataStorageMB": {"Max": 5, "Remaining": 5}})


@bp.route("/services/data/<ver>/sobjects", methods=["GET"], strict_slashes=False)
def global_describe(ver: str) -> Response:
    """The list of sObjects."""
    store = current_sandbox().store
    v = _version(ver) or "59.0"
    with store.lock:
        names = list(store.sf_fields)
    return _json({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
        {"name": n, "label": n, "keyPrefix": store.sf_describe(n, v)["keyPrefix"], "queryable": True, "updateable": True,
         "createable": True, "custom": False, "urls": {"sobject": f"/services/data/v{v}/sobjects/{n}",
                                                       "describe": f"/services/data/v{v}/sobjects/{n}/describe"}}
        for n in names]})


@bp.route("/services/data/<ver>/sobjects/<name>/describe", methods=["GET"], strict_slashes=False)
def describe(ver: str, name: str) -> Response:
    """Describe one sObject (custom fields included once created)."""
    sobject = _sobject(name)
    return _json(current_sandbox().store.sf_describe(sobject, _version(ver) or "59.0"))


@bp.route("/services/data/<ver>/sobjects/<name>", methods=["GET"], strict_slashes=False)
def sobject_info(ver: str, name: str) -> Response:
    """Basic information about an sObject (SFType.metadata)."""
    sobject = _sobject(name)
    full = current_sandbox().store.sf_describe(sobject, _version(ver) or "59.0")
    return _json({"objectDescribe": {k: v for k, v in full.items() if k != "fields"}, "recentItems": []})


@bp.route("/services/data/<ver>/sobjects/<name>", methods=["POST"], strict_slashes=False)
def create_record(ver: str, name: str) -> Response:
    """Create one record (201 {id, success, errors})."""
    sobject = _sobject(name)
    data = _json_body()
    if not isinstance(data, dict):
        return sf_error(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from non-object value")
    try:
        rid = current_sandbox().store.sf_create(sobject, data, source="API")
    except SalesforceRecordError as exc:
        return sf_error(400, exc.status_code, exc.message, exc.fields)
    return _json({"id": rid, "success": True, "errors": []}, 201)


# ---------------------------------------------------------------------------------------------- records
def _project(sobject: str, rec: dict[str, Any], fields: list[str] | None, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{rec['Id']}"}}
    store = current_sandbox().store
    for name in fields or list(rec):
        fdef = store.sf_field(sobject, name)
        if fdef is not None:
            out[fdef["name"]] = rec.get(fdef["name"])
    return out


@bp.route("/services/data/<ver>/sobjects/<name>/<rid>", methods=["GET"])
def get_record(ver: str, name: str, rid: str) -> Response:
    """Read one record by 15- or 18-character id."""
    sobject = _sobject(name)
    store = current_sandbox().store
    rec = store.sf_get(sobject, rid)
    if rec is None:
        return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
    fields = [f for f in (request.args.get("fields") or "").split(",") if f] or None
    if fields:
        unknown = [f for f in fields if store.sf_field(sobject, f) is None]
        if unknown:
            return sf_error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}")
    return _json(_project(sobject, rec, fields, _version(ver) or "59.0"))


@bp.route("/services/data/<ver>/sobjects/<name>/<rid>", methods=["PATCH"])
def update_record(ver: str, name: str, rid: str) -> Response:
    """Update one record (204 No Content)."""
    sobject = _sobject(name)
    data = _json_body()
    if not isinstance(data, dict):
        return sf_error(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from non-object value")
    try:
        current_sandbox().store.sf_update(sobject, rid, data, source="API")
    except SalesforceRecordError as exc:
        if exc.status_code in ("ENTITY_IS_DELETED", "MALFORMED_ID"):
            return sf_error(404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: " + rid)
        return sf_error(exc.http_status, exc.status_code, exc.message, exc.fields)
    return Response(status=204)


@bp.route("/services/data/<ver>/sobjects/<name>/<rid>", methods=["DELETE"])
def delete_record(ver: str, name: str, rid: str) -> Response:
    """Delete one record (204)."""
    sobject = _sobject(name)
    store = current_sandbox().store
    with store.lock:
        rec = store.sf_get(sobject, rid)
        if rec is None:
            return sf_error(404, "ENTITY_IS_DELETED", "entity is deleted")
        del store.sf_records[sobject][rec["Id"]]
    return Response(status=204)


def _external_id_field(sobject: str, field_name: str) -> str:
    """The canonical name of an External ID field (or Id); 404 as Salesforce answers for any other field."""
    fdef = current_sandbox().store.sf_field(sobject, field_name)
    if fdef is None or not (fdef.get("externalId") or fdef["name"] == "Id"):
        abort(sf_error(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: "
                       f"{field_name}"))
    return str(fdef["name"])


@bp.route("/services/data/<ver>/sobjects/<name>/<field_name>/<path:value>", methods=["GET"])
def get_by_external_id(ver: str, name: str, field_name: str, value: str) -> Response:
    """Read one record by an External ID field's value (404 when none; 300 with the matches when several)."""
    sobject = _sobject(name)
    fname = _external_id_field(sobject, field_name)
    found = current_sandbox().store.sf_find(sobject, fname, value)
    version = _version(ver) or "59.0"
    if not found:
        return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
    if len(found) > 1:
        return _json([f"/services/data/v{version}/sobjects/{sobject}/{r['Id']}" for r in found], 300)
    return _json(_project(sobject, found[0], None, version))


@bp.route("/services/data/<ver>/sobjects/<name>/<field_name>/<path:value>", methods=["PATCH"])
def upsert_by_external_id(ver: str, name: str, field_name: str, value: str) -> Response:
    """Upsert by External ID: create (201, created true) when no record holds the value, else update it
    (200, created false); 300 when several do. The check and the write happen under one lock."""
    sobject = _sobject(name)
    fname = _external_id_field(sobject, field_name)
    data = _json_body()
    if not isinstance(data, dict):
        return sf_error(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from non-object value")
    if any(k.lower() == fname.lower() for k in data):
        return sf_error(400, "INVALID_FIELD", f"The external ID field {fname} must not be set in the body of an "
                        "upsert by that field", [fname])
    store = current_sandbox().store
    version = _version(ver) or "59.0"
    try:
        with store.lock:
            found = store.sf_find(sobject, fname, value)
            if len(found) > 1:
                return _json([f"/services/data/v{version}/sobjects/{sobject}/{r['Id']}" for r in found], 300)
            if found:
                store.sf_update(sobject, found[0]["Id"], data, source="API")
                return _json({"id": found[0]["Id"], "success": True, "errors": [], "created": False})
            rid = store.sf_create(sobject, {**data, fname: value}, source="API")
    except SalesforceRecordError as exc:
        return sf_error(exc.http_status, exc.status_code, exc.message, exc.fields)
    return _json({"id": rid, "success": True, "errors": [], "created": True}, 201)


# ---------------------------------------------------------------------------------------------- SOQL
class QueryCursors:
    """Server-side query locators for nextRecordsUrl paging (oldest dropped first)."""

    def __init__(self, keep: int = 200) -> None:
        self._cursors: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def open(self, records: list[dict[str, Any]]) -> str:
        """Store a result set and return its locator id."""
        locator = sf_id18("01g" + "Sb" + secrets.token_hex(5).upper())
        with self._lock:
            self._cursors[locator] = records
            while len(self._cursors) > self._keep:
                self._cursors.popitem(last=False)
        return locator

    def get(self, locator: str) -> list[dict[str, Any]] | None:
        """Return the stored result set, or None when it expired."""
        with self._lock:
            return self._cursors.get(locator)


def _batch_size() -> int:
    m = re.search(r"batchSize\s*=\s*(\d+)", request.headers.get("Sforce-Query-Options", ""))
    size = int(m.group(1)) if m else current_sandbox().config.salesforce_query_batch
    return max(200, min(2000, size))


def _page(records: list[dict[str, Any]], start: int, size: int, locator: str | None, version: str) -> dict[str, Any]:
    chunk = records[start : start + size]
    done = start + size >= len(records)
    body: dict[str, Any] = {"totalSize": len(records), "done": done, "records": chunk}
    if not done:
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{start + size}"
    return body


def _run_query(ver: str) -> Response:
    version = _version(ver) or "59.0"
    text = request.args.get("q")
    if not text:
        return sf_error(400, "MALFORMED_QUERY", "A query string (q) is required")
    store = current_sandbox().store
    try:
        parsed = soql.parse(text, store)
        records = soql.execute(parsed, store, version)
    except soql.SoqlError as exc:
        return sf_error(400, exc.code, exc.message)
    size = _batch_size()
    locator = current_sandbox().sf_cursors.open(records) if len(records) > size else None
    return _json(_page(records, 0, size, locator, version))


@bp.route("/services/data/<ver>/query", methods=["GET"], strict_slashes=False)
def query(ver: str) -> Response:
    """Run a SOQL query (subset, see soql.py); pages of 2,000 or the requested batchSize."""
    return _run_query(ver)


@bp.route("/services/data/<ver>/queryAll", methods=["GET"], strict_slashes=False)
def query_all(ver: str) -> Response:
    """Same as query (the sandbox keeps no recycle bin)."""
    return _run_query(ver)


@bp.route("/services/data/<ver>/query/<locator>", methods=["GET"])
def query_more(ver: str, locator: str) -> Response:
    """Follow a nextRecordsUrl."""
    version = _version(ver) or "59.0"
    m = re.fullmatch(r"([A-Za-z0-9]{15,18})-(\d+)", locator)
    records = current_sandbox().sf_cursors.get(m.group(1)) if m else None
    if m is None or records is None:
        return sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _json(_page(records, int(m.group(2)), _batch_size(), m.group(1), version))


# ---------------------------------------------------------------------------------------------- sObject Collections
def _validate_collection(data: Any, need_id: bool) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        abort(sf_error(400, "JSON_PARSER_ERROR", "The request body must be an object with a records array"))
    records = data["records"]
    if len(records) > COLLECTION_LIMIT:
        abort(sf_error(400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {COLLECTION_LIMIT} "
                       "records into this call"))
    chunks, last = 0, None
    for rec in records:
        if not isinstance(rec, dict) or not isinstance(rec.get("attributes"), dict) or not rec["attributes"].get("type"):
            abort(sf_error(400, "INVALID_TYPE", "Each record in the records array must have attributes.type"))
        if rec["attributes"]["type"] != last:
            chunks, last = chunks + 1, rec["attributes"]["type"]
    if chunks > COLLECTION_CHUNK_LIMIT:
        abort(sf_error(400, "INVALID_BATCH_REQUEST", f"Cannot have more than {COLLECTION_CHUNK_LIMIT} chunks in a "
                       "single operation. Please rearrange the data to reduce chunking."))
    if "allOrNone" in data and not isinstance(data["allOrNone"], bool):
        abort(sf_error(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean"))
    return records


# A staged record: the id to report if allOrNone rolls it back (None for a create), and the write to run.
_Staged = tuple[str | None, Callable[[], str]]
_ROLLED_BACK_MESSAGE = ("Record rolled back because not all records were valid and the request was using "
                        "AllOrNone header")


def _collection_response(stage: Callable[[SandboxStore, dict[str, Any]], _Staged], need_id: bool) -> Response:
    """Stage every record, then write the good ones in order (none when allOrNone and any record failed)."""
    data = _json_body()
    records = _validate_collection(data, need_id=need_id)
    store = current_sandbox().store
    all_or_none = bool(data.get("allOrNone", False))
    results: list[dict[str, Any]] = []
    with store.lock:
        staged: list[_Staged | SalesforceRecordError] = []
        for rec in records:
            try:
                staged.append(stage(store, rec))
            except SalesforceRecordError as exc:
                staged.append(exc)
        failed = any(isinstance(s, SalesforceRecordError) for s in staged)
        for item in staged:
            if isinstance(item, SalesforceRecordError):
                results.append({"success": False, "errors": [item.as_result_error()]})
            elif all_or_none and failed:
                rolled_back = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                               "message": _ROLLED_BACK_MESSAGE, "fields": []}
                results.append({**({"id": item[0]} if item[0] is not None else {}), "success": False,
                                "errors": [rolled_back]})
            else:
                results.append({"id": item[1](), "success": True, "errors": []})
    return _json(results)


def _stage_update(store: SandboxStore, rec: dict[str, Any]) -> _Staged:
    sobject = store.sf_sobject(rec["attributes"]["type"])
    fields = {k: v for k, v in rec.items() if k not in ("attributes", "id", "Id")}
    rid = rec.get("id") or rec.get("Id")
    if sobject is None:
        raise SalesforceRecordError("INVALID_TYPE", f"sObject type '{rec['attributes']['type']}' is not "
                                    "supported.", [])
    if not rid:
        raise SalesforceRecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
    store.sf_update(sobject, str(rid), fields, apply=False)
    full_id = store.sf_normalise_id(sobject, str(rid))

    def write() -> str:
        store.sf_update(sobject, full_id, fields, source="API")
        return full_id
    return full_id, write


def _stage_create(store: SandboxStore, rec: dict[str, Any]) -> _Staged:
    sobject = store.sf_sobject(rec["attributes"]["type"])
    if sobject is None:
        raise SalesforceRecordError("INVALID_TYPE", "sObject type is not supported.", [])
    if rec.get("id") or rec.get("Id"):
        raise SalesforceRecordError("INVALID_FIELD", "Id field should not be specified in the sobject data.",
                                    ["Id"])
    store._sf_coerce(sobject, rec, creating=True)
    fields = {k: v for k, v in rec.items() if k != "attributes"}
    return None, lambda: store.sf_create(sobject, fields, source="API")


@bp.route("/services/data/<ver>/composite/sobjects", methods=["PATCH"], strict_slashes=False)
def collection_update(ver: str) -> Response:
    """Update up to 200 records; per-record results in order; allOrNone rolls back everything on any failure."""
    return _collection_response(_stage_update, need_id=True)


@bp.route("/services/data/<ver>/composite/sobjects", methods=["POST"], strict_slashes=False)
def collection_create(ver: str) -> Response:
    """Create up to 200 records; per-record results in order."""
    return _collection_response(_stage_create, need_id=False)


# ---------------------------------------------------------------------------------------------- Tooling API
_TOOLING_TYPES = {"Number": "double", "Text": "string", "LongTextArea": "textarea", "TextArea": "textarea",
                  "DateTime": "datetime", "Date": "date", "Checkbox": "boolean", "Picklist": "picklist",
                  "Currency": "currency", "Percent": "percent", "Email": "email", "Phone": "phone", "Url": "url"}
_TOOLING_LENGTHS = {"textarea": 32768, "email": 80, "phone": 40, "url": 255, "picklist": 255}


def _picklist(meta: dict[str, Any]) -> tuple[list[dict[str, Any]], bool] | None:
    """A Picklist's values from Metadata.valueSet.valueSetDefinition.value[] (fullName, label, default)."""
    value_set = meta.get("valueSet")
    values = ((value_set or {}).get("valueSetDefinition") or {}).get("value") if isinstance(value_set, dict) else None
    if not isinstance(values, list) or not values or not all(
            isinstance(v, dict) and str(v.get("fullName") or "") for v in values):
        return None
    entries = [{"active": True, "defaultValue": bool(v.get("default")), "label": str(v.get("label") or v["fullName"]),
                "validFor": None, "value": str(v["fullName"])} for v in values]
    return entries, bool(value_set.get("restricted"))


@bp.route("/services/data/<ver>/tooling/sobjects/CustomField", methods=["POST"], strict_slashes=False)
def create_custom_field(ver: str) -> Response:
    """Create a custom field the way the Tooling API does: FullName 'Object.Field__c' plus Metadata."""
    data = _json_body()
    if not isinstance(data, dict) or not isinstance(data.get("Metadata"), dict) or "." not in str(data.get("FullName", "")):
        return sf_error(400, "FIELD_INTEGRITY_EXCEPTION", "FullName ('Object.Field__c') and Metadata are required")
    obj_name, field_name = str(data["FullName"]).split(".", 1)
    sobject = current_sandbox().store.sf_sobject(obj_name)
    if sobject is None:
        return sf_error(400, "FIELD_INTEGRITY_EXCEPTION", f"Unknown object {obj_name}")
    meta = data["Metadata"]
    ftype = _TOOLING_TYPES.get(str(meta.get("type")))
    if ftype is None:
        return sf_error(400, "FIELD_INTEGRITY_EXCEPTION", f"Unsupported field type {meta.get('type')!r}; the sandbox "
                        f"knows {', '.join(sorted(_TOOLING_TYPES))}")
    picklist: tuple[list[dict[str, Any]], bool] | None = None
    if ftype == "picklist":
        picklist = _picklist(meta)
        if picklist is None:
            return sf_error(400, "FIELD_INTEGRITY_EXCEPTION", "Picklist: valueSet.valueSetDefinition.value must list "
                            "at least one value, each with a fullName")
    try:
        fdef = current_sandbox().store.sf_add_field(
            sobject, field_name, ftype, str(meta.get("label") or field_name),
            length=int(meta.get("length") or _TOOLING_LENGTHS.get(ftype, 0)),
            precision=int(meta.get("precision") or 0), scale=int(meta.get("scale") or 0),
            picklist=picklist[0] if picklist else None, restricted=picklist[1] if picklist else False,
            external_id=bool(meta.get("externalId")), unique=bool(meta.get("unique")))
    except SalesforceRecordError as exc:
        return sf_error(400, exc.status_code, exc.message, exc.fields)
    except (TypeError, ValueError):
        return sf_error(400, "FIELD_INTEGRITY_EXCEPTION", "length, precision and scale must be whole numbers")
    field_id = sf_id18("00N" + "Sb" + secrets.token_hex(5).upper())
    del fdef
    return _json({"id": field_id, "success": True, "errors": [], "warnings": [], "infos": []}, 201)


# ---------------------------------------------------------------------------------------------- SOAP login
_SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


def _soap(inner: str, *, namespace: str, status: int = 200) -> Response:
    """A SOAP envelope around `inner` (the Partner API's answers and faults)."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{_SOAP_NS}" {namespace} '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{inner}</soapenv:Body>'
            "</soapenv:Envelope>")
    return Response(body, status=status, content_type="text/xml;charset=UTF-8")


def _login_fault(code: str, message: str) -> Response:
    return _soap(
        f"<soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        f'<detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode>'
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>",
        namespace='xmlns:sf="urn:fault.partner.soap.sforce.com"', status=500)


@bp.route("/services/Soap/u/<ver>", methods=["POST"])
def soap_login(ver: str) -> Response:
    """Partner API login: username + password(+security token) -> sessionId and serverUrl."""
    try:
        root = SafeET.fromstring(request.get_data())
    except Exception:  # noqa: BLE001 - any XML problem is the client's fault
        return _login_fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    username = password = None
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "username":
            username = (el.text or "").strip()
        elif tag == "password":
            password = el.text or ""
    sandbox = current_sandbox()
    expected = sandbox.config.salesforce_users.get(username or "")
    if not username or expected is None or password != expected:
        return _login_fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    session_id = sandbox.new_sf_session()
    org = sandbox.config.salesforce_org_id
    host = request.host
    server_url = f"https://{host}/services/Soap/u/{ver}/{org[:15]}"
    return _soap(
        "<loginResponse><result>"
        f"<metadataServerUrl>https://{host}/services/Soap/m/{ver}/{org[:15]}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
        f"<serverUrl>{server_url}</serverUrl><sessionId>{session_id}</sessionId>"
        f"<userId>{sandbox.store.sf_default_owner}</userId>"
        f"<userInfo><organizationId>{org}</organizationId><userName>{escape(username)}</userName></userInfo>"
        "</result></loginResponse>", namespace='xmlns="urn:partner.soap.sforce.com"')


# ---------------------------------------------------------------------------------------------- identity
@bp.route("/services/oauth2/userinfo", methods=["GET"])
def userinfo() -> Response:
    """Who the session is (OpenID Connect userinfo): the API user's id, org and username; 403 for a bad token."""
    sandbox = current_sandbox()
    header = request.headers.get("Authorization", "")
    token = header.split(" ", 1)[1].strip() if header.lower().startswith(("bearer ", "oauth ")) else ""
    if not token or token not in sandbox.sf_sessions:
        return Response("Bad_OAuth_Token", status=403, content_type="text/plain;charset=UTF-8")
    store = sandbox.store
    user = store.sf_get("User", store.sf_default_owner) or {}
    org = sandbox.config.salesforce_org_id
    host = request.host
    return _json({"sub": f"https://login.salesforce.com/id/{org}/{user.get('Id')}", "user_id": user.get("Id"),
                  "organization_id": org, "preferred_username": user.get("Username"), "name": user.get("Name"),
                  "email": user.get("Email"), "email_verified": True, "active": True, "user_type": "STANDARD",
                  "urls": {"rest": f"https://{host}/services/data/v{{version}}/",
                           "query": f"https://{host}/services/data/v{{version}}/query/"}})
