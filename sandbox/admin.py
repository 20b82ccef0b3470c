"""The sandbox's own admin API under /_sandbox: faults, request and write logs, webhook targets, seeding."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, request

from sandbox.control import FaultSpecError
from sandbox.crm_actions import HUBSPOT_SCOPES, demo_ids
from sandbox.current import current_sandbox
from sandbox.slack_sink import WEBHOOK_ERRORS
from sandbox.store import HubSpotValidationError, SalesforceRecordError
from sandbox.webhooks import TargetSpecError

bp = Blueprint("sandbox_admin", __name__, url_prefix="/_sandbox")
HS_SEED_PROBLEM = "unknown object type, or properties missing"
SF_SEED_PROBLEM = "unknown sObject, or fields missing"



def _ok(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _bad(message: str, status: int = 400) -> Response:
    return _ok({"error": message}, status)


# The request readers below stop the view with abort(<400 response>) rather than returning it, so each route
# reads its inputs in one line.
def _body() -> dict[str, Any]:
    try:
        data = json.loads(request.get_data() or b"{}")
    except ValueError as exc:
        abort(_bad(f"body is not valid JSON: {exc}"))
    if not isinstance(data, dict):
        abort(_bad("body must be a JSON object"))
    return data


def _seed_body(name: str | None, key: str, problem: str) -> tuple[str, dict[str, Any], str]:
    """The type, the values under `key` and the change source of a seeding call (400 if one is missing)."""
    data = _body()
    if name is None or not isinstance(data.get(key), dict):
        abort(_bad(problem))
    return name, data[key], str(data.get("source", "CRM_UI"))


def _float_arg(name: str, default: float = 0.0) -> float:
    try:
        return float(request.args.get(name, default))
    except ValueError:
        abort(_bad(f"{name} must be a number"))


@bp.before_request
def check_admin_token() -> Response | None:
    """When the sandbox has an admin token, every admin call must carry it."""
    token = current_sandbox().config.admin_token
    if token and request.headers.get("X-Sandbox-Admin-Token") != token:
        return _bad("missing or wrong X-Sandbox-Admin-Token", 401)
    return None


@bp.errorhandler(HubSpotValidationError)
def hubspot_refused(exc: HubSpotValidationError) -> Response:
    """A seeded HubSpot record the store refuses: its message, with HubSpot's status."""
    return _bad(exc.message, exc.status)


@bp.errorhandler(FaultSpecError)
@bp.errorhandler(TargetSpecError)
def spec_error(exc: Exception) -> Response:
    """A fault or webhook target the caller described wrongly is a 400 with the reason."""
    return _bad(str(exc))


@bp.route("/health", methods=["GET"])
def health() -> Response:
    """Liveness plus a summary of what the sandbox holds."""
    sandbox = current_sandbox()
    store = sandbox.store
    with store.lock:
        counts = {f"hubspot.{t}": len(v) for t, v in store.hs_objects.items()}
        counts.update({f"salesforce.{t}": len(v) for t, v in store.sf_records.items()})
    return _ok({"ok": True, "records": counts, "pending_webhooks": sandbox.webhooks.pending()})


@bp.route("/info", methods=["GET"])
def info() -> Response:
    """Sandbox-only credentials and URLs a client needs (these never work anywhere else)."""
    sandbox = current_sandbox()
    cfg = sandbox.config
    return _ok({"base_url": sandbox.base_url, "hubspot_tokens": sorted(cfg.hubspot_tokens),
                "hubspot_portal_id": cfg.hubspot_portal_id, "salesforce_session_id": cfg.salesforce_session_id,
                "salesforce_users": sorted(cfg.salesforce_users), "salesforce_org_id": cfg.salesforce_org_id,
                "slack_webhook_path": "/services/TSANDBOX/BSANDBOX/sandboxsecret",
                "limits": {"hubspot_requests": cfg.hubspot_rate_max, "hubspot_window_seconds": cfg.hubspot_rate_window,
                           "hubspot_search_per_second": cfg.hubspot_search_per_second,
                           "salesforce_daily_api_max": cfg.salesforce_daily_api_max,
                           "slack_per_second": cfg.slack_rate, "slack_burst": cfg.slack_burst},
                "actions": demo_ids(sandbox.store),
                "hubspot_revoked_scopes": sorted(cfg.hubspot_revoked_scopes)})


@bp.route("/hubspot/scopes", methods=["PUT"])
def set_hubspot_scopes() -> Response:
    """Take scopes from (or give them back to) every private-app token: {"revoked": [scope, ...]} (a drill's 403)."""
    revoked = _body().get("revoked")
    if not isinstance(revoked, list) or not all(isinstance(s, str) for s in revoked):
        return _bad("revoked must be a list of HubSpot scope names")
    unknown = sorted(set(revoked) - HUBSPOT_SCOPES)
    if unknown:
        return _bad(f"unknown scope(s) {', '.join(unknown)}; the sandbox knows {', '.join(sorted(HUBSPOT_SCOPES))}")
    cfg = current_sandbox().config
    cfg.hubspot_revoked_scopes = set(revoked)
    return _ok({"revoked": sorted(cfg.hubspot_revoked_scopes)})


# ---------------------------------------------------------------------------------------------- faults
@bp.route("/faults", methods=["POST"])
def add_fault() -> Response:
    """Inject a fault: {route, kind: status|slow|drop|lost_response, status, retry_after, delay, count, seconds, method, body}."""
    return _ok(current_sandbox().faults.add(_body()).describe(), 201)


@bp.route("/faults", methods=["GET"])
def list_faults() -> Response:
    """Active faults."""
    return _ok({"faults": current_sandbox().faults.list()})


@bp.route("/faults", methods=["DELETE"], endpoint="clear_faults", defaults={"what": "faults"})
@bp.route("/requests", methods=["DELETE"], endpoint="clear_requests", defaults={"what": "requests"})
def clear(what: str) -> Response:
    """Remove every fault (/faults), or forget the request log (/requests)."""
    getattr(current_sandbox(), what).clear()
    return Response(status=204)


# ---------------------------------------------------------------------------------------------- logs
@bp.route("/requests", methods=["GET"])
def list_requests() -> Response:
    """Answered requests: ?since=<unix>&path=<regex>&family=hubspot|salesforce|slack."""
    since = _float_arg("since")
    try:
        items = current_sandbox().requests.query(since, request.args.get("path"), request.args.get("family"))
    except Exception as exc:  # noqa: BLE001 - a bad regex is the caller's input error
        return _bad(f"path is not a valid regular expression: {exc}")
    return _ok({"requests": items})


@bp.route("/writes", methods=["GET"])
def list_writes() -> Response:
    """Property writes with high-resolution timestamps: ?since=&prefix=&crm=&object_id=."""
    since = _float_arg("since")
    return _ok({"writes": current_sandbox().store.writes_since(since, request.args.get("prefix", ""), request.args.get("crm"),
                                                        request.args.get("object_id"))})


# ---------------------------------------------------------------------------------------------- webhooks
@bp.route("/webhooks", methods=["POST"])
def add_webhook_target() -> Response:
    """Register an outbound webhook target (HubSpot JSON or Salesforce Outbound Message)."""
    return _ok(current_sandbox().webhooks.add_target(_body()).public(), 201)


@bp.route("/webhooks", methods=["GET"])
def list_webhook_targets() -> Response:
    """Registered targets and the number of undelivered items."""
    hooks = current_sandbox().webhooks
    return _ok({"targets": hooks.targets(), "pending": hooks.pending()})


@bp.route("/webhooks/<target_id>", methods=["DELETE"])
def remove_webhook_target(target_id: str) -> Response:
    """Remove a target."""
    if not current_sandbox().webhooks.remove_target(target_id):
        return _bad(f"no webhook target {target_id}", 404)
    return Response(status=204)


@bp.route("/webhooks/<target_id>/subscriptions", methods=["PUT"])
def set_webhook_subscriptions(target_id: str) -> Response:
    """Set a HubSpot target's propertyChange subscriptions from a webhooks.json `subscriptions` object.

    HubSpot sends a property's changes only while the app subscribes to that property; the object types the
    body names get exactly the active subscriptions it lists.
    """
    target = current_sandbox().webhooks.set_subscriptions(target_id, _body())
    if target is None:
        return _bad(f"no webhook target {target_id}", 404)
    return _ok(target.public())


@bp.route("/webhooks/deliveries", methods=["GET"])
def list_deliveries() -> Response:
    """Delivery attempts (status, attempt number, count, timing)."""
    since = _float_arg("since")
    return _ok({"deliveries": [d for d in list(current_sandbox().webhooks.deliveries) if d["t"] >= since]})


@bp.route("/webhooks/flush", methods=["POST"])
def flush_webhooks() -> Response:
    """Wait (up to ?timeout= seconds, default 10) until every queued webhook was delivered."""
    timeout = _float_arg("timeout", 10.0)
    drained = current_sandbox().webhooks.flush(min(timeout, 120.0))
    return _ok({"drained": drained, "pending": current_sandbox().webhooks.pending()})


# ---------------------------------------------------------------------------------------------- slack
@bp.route("/slack/messages", methods=["GET"])
def slack_messages() -> Response:
    """Messages the Slack sink accepted: ?path=/services/T/B/x&since=."""
    since = _float_arg("since")
    return _ok({"messages": current_sandbox().slack.list(request.args.get("path"), since)})


@bp.route("/slack/messages", methods=["DELETE"])
def clear_slack() -> Response:
    """Forget Slack messages and forced errors."""
    current_sandbox().slack.clear()
    current_sandbox().slack_limiter.reset()
    return Response(status=204)


@bp.route("/slack/state", methods=["POST"])
def slack_state() -> Response:
    """Make one webhook path answer a documented error: {path, error} (error null to clear)."""
    data = _body()
    path, error = data.get("path"), data.get("error")
    if not isinstance(path, str) or not path.startswith("/services/"):
        return _bad("path must be the webhook path, e.g. /services/T000/B000/secret")
    if error is not None and error not in WEBHOOK_ERRORS:
        return _bad(f"error must be one of {sorted(WEBHOOK_ERRORS)} or null")
    if error is None:
        current_sandbox().slack.forced.pop(path, None)
    else:
        current_sandbox().slack.forced[path] = error
    return _ok({"path": path, "error": error})


@bp.route("/slack/api", methods=["POST"])
def slack_api_state() -> Response:
    """Shape the Slack workspace: {members: {email: user id}, absent: [emails], tokens: {token: [scopes]}} (each
    optional; an absent e-mail is not a member even when a CRM owner has it)."""
    data = _body()
    workspace = current_sandbox().slack_api
    members, absent, tokens = data.get("members") or {}, data.get("absent") or [], data.get("tokens") or {}
    if not (isinstance(members, dict) and isinstance(absent, list) and isinstance(tokens, dict)):
        return _bad("members and tokens are objects, absent a list")
    if any(not isinstance(v, list) for v in tokens.values()):
        return _bad("tokens map a token to a list of scopes")
    with workspace.lock:
        workspace.members.update({str(k).lower(): str(v) for k, v in members.items()})
        workspace.absent.update(str(e).lower() for e in absent)
        workspace.tokens.update({str(k): tuple(str(s) for s in v) for k, v in tokens.items()})
    return _ok({"members": len(workspace.members), "tokens": len(workspace.tokens)})


@bp.route("/slack/dms", methods=["GET"])
def slack_dms() -> Response:
    """Messages the bot posted in direct messages, oldest first per conversation."""
    return _ok({"messages": current_sandbox().slack_api.dms()})


# ---------------------------------------------------------------------------------------------- state
@bp.route("/reset", methods=["POST"])
def reset() -> Response:
    """Drop every record, fault, log, message and limiter state (webhook targets stay)."""
    current_sandbox().reset()
    return Response(status=204)


@bp.route("/save", methods=["POST"])
def save() -> Response:
    """Write the records to the data directory's JSON file."""
    path = current_sandbox().save()
    if path is None:
        return _bad("the sandbox was started without a data directory", 409)
    return _ok({"saved": str(path)})


@bp.route("/salesforce/sessions", methods=["POST"])
def new_session() -> Response:
    """Mint a new Salesforce session id (what an OAuth or SOAP login hands out)."""
    return _ok({"session_id": current_sandbox().new_sf_session()}, 201)


# ---------------------------------------------------------------------------------------------- seeding (as a CRM user)
@bp.route("/hubspot/<object_type>", methods=["POST"])
def hs_create(object_type: str) -> Response:
    """Create a HubSpot record as a CRM user would ({properties, source, user_id}); fires webhooks, skips limits."""
    store = current_sandbox().store
    otype, props, source = _seed_body(store.hs_type(object_type), "properties", HS_SEED_PROBLEM)
    user = _body().get("user_id")  # the HubSpot user acting in the UI (a rep logging a call)
    return _ok(store.hs_create(otype, props, source=source, user_id=None if user is None else str(user)), 201)


@bp.route("/hubspot/<object_type>/<object_id>", methods=["PATCH"])
def hs_update(object_type: str, object_id: str) -> Response:
    """Change a HubSpot record as a CRM user would."""
    store = current_sandbox().store
    otype, props, source = _seed_body(store.hs_type(object_type), "properties", HS_SEED_PROBLEM)
    try:
        obj = store.hs_update(otype, object_id, props, source=source)
    except KeyError:
        return _bad(f"no {otype} with id {object_id}", 404)
    return _ok(obj)


@bp.route("/hubspot/associations", methods=["PUT"])
def hs_associate() -> Response:
    """Associate two HubSpot records: {from_type, from_id, to_type, to_id, primary}."""
    store = current_sandbox().store
    data = _body()
    ftype, ttype = store.hs_type(str(data.get("from_type", ""))), store.hs_type(str(data.get("to_type", "")))
    if ftype is None or ttype is None:
        return _bad("from_type and to_type must be HubSpot object types")
    from sandbox.schema import HS_ASSOC_TYPE_IDS

    default, primary = HS_ASSOC_TYPE_IDS.get((ftype, ttype), (0, None))
    types = [default] + ([primary] if data.get("primary") and primary is not None else [])
    try:
        ids = store.hs_associate(ftype, str(data.get("from_id")), ttype, str(data.get("to_id")), types,
                                 source=str(data.get("source", "CRM_UI")))
    except KeyError as exc:
        return _bad(f"no record with id {exc.args[0]}", 404)
    return _ok({"type_ids": ids})


@bp.route("/salesforce/<sobject>", methods=["POST"])
def sf_create(sobject: str) -> Response:
    """Create a Salesforce record as a CRM user would ({fields, source})."""
    store = current_sandbox().store
    name, fields, source = _seed_body(store.sf_sobject(sobject), "fields", SF_SEED_PROBLEM)
    try:
        rid = store.sf_create(name, fields, source=source)
    except SalesforceRecordError as exc:
        return _bad(f"{exc.status_code}: {exc.message}")
    return _ok({"id": rid}, 201)


@bp.route("/salesforce/<sobject>/<rid>", methods=["PATCH"])
def sf_update(sobject: str, rid: str) -> Response:
    """Change a Salesforce record as a CRM user would."""
    store = current_sandbox().store
    name, fields, source = _seed_body(store.sf_sobject(sobject), "fields", SF_SEED_PROBLEM)
    try:
        store.sf_update(name, rid, fields, source=source)
    except SalesforceRecordError as exc:
        return _bad(f"{exc.status_code}: {exc.message}", 404 if exc.http_status == 404 else 400)
    return Response(status=204)


@bp.route("/salesforce/Lead/<rid>/convert", methods=["POST"])
def sf_convert(rid: str) -> Response:
    """Convert a Lead; {won: true|false|null} also creates a closed Opportunity."""
    store = current_sandbox().store
    data = _body()
    rec = store.sf_get("Lead", rid)
    if rec is None:
        return _bad(f"no Lead {rid}", 404)
    if rec["IsConverted"]:
        return _bad(f"Lead {rid} is already converted", 409)
    return _ok(store.sf_convert_lead(rec["Id"], won=data.get("won")), 201)


@bp.route("/salesforce/<sobject>/fields", methods=["POST"])
def sf_add_field(sobject: str) -> Response:
    """Add a custom field: {name, type (double|string|textarea|datetime|boolean|date), label, length, precision, scale}."""
    store = current_sandbox().store
    name = store.sf_sobject(sobject)
    data = _body()
    if name is None or not data.get("name") or data.get("type") not in ("double", "string", "textarea", "datetime",
                                                                        "boolean", "date", "picklist"):
        return _bad("unknown sObject, or name/type missing or not one of double|string|textarea|datetime|boolean|date")
    try:
        fdef = store.sf_add_field(name, str(data["name"]), str(data["type"]), str(data.get("label") or data["name"]),
                                  length=int(data.get("length") or 0), precision=int(data.get("precision") or 0),
                                  scale=int(data.get("scale") or 0))
    except SalesforceRecordError as exc:
        return _bad(f"{exc.status_code}: {exc.message}", 409)
    return _ok(fdef, 201)


# ---------------------------------------------------------------------------------------------- setup (as an admin)
@bp.route("/salesforce/<sobject>/history-tracking", methods=["GET"])
def sf_history_tracking(sobject: str) -> Response:
    """The fields whose changes `sobject`'s History object records."""
    store = current_sandbox().store
    name = store.sf_sobject(sobject)
    if name is None or store.sf_history_object(name) is None:
        return _bad(f"{sobject} has no field history (the sandbox tracks Lead and Contact)", 404)
    return _ok({"sobject": name, "history_object": store.sf_history_object(name),
                "tracked": store.sf_tracked_fields(name)})


@bp.route("/salesforce/<sobject>/history-tracking", methods=["PUT"])
def sf_set_history_tracking(sobject: str) -> Response:
    """Choose the tracked fields, {fields: [...]} (the whole set, at most 20), as Setup's Field History Tracking
    page does in Salesforce; there is no API for it there. Tracking starts now: earlier changes have no rows."""
    store = current_sandbox().store
    name = store.sf_sobject(sobject)
    data = _body()
    fields = data.get("fields")
    if name is None:
        return _bad(f"unknown sObject {sobject}", 404)
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        return _bad("fields must be a list of field names")
    try:
        tracked = store.sf_set_tracked_fields(name, fields)
    except SalesforceRecordError as exc:
        return _bad(f"{exc.status_code}: {exc.message}")
    return _ok({"sobject": name, "history_object": store.sf_history_object(name), "tracked": tracked})
