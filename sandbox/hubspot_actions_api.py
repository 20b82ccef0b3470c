"""HubSpot owners, lists (v3) and sequence enrolments (automation v4) of the sandbox: what rule actions call.

The routes join the HubSpot blueprint of sandbox.hubspot_api, so they share its token check (with scopes), rate
limits and error body. Shapes follow hubspot-api-client 12's models (crm.owners PublicOwner, crm.lists
ListCreateResponse / MembershipsUpdateResponse) and HubSpot's sequences reference (enrolment: id, toEmail,
enrolledAt, updatedAt). Where HubSpot documents no error text the sandbox's wording is its own; clients must key
on the status, never the text.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, request

from sandbox.crm_actions import HubSpotActionState, now_ms
from sandbox.current import current_sandbox
from sandbox.hubspot_api import bp, hs_error
from sandbox.ids import iso_ms

__all__ = ["bp"]


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json;charset=utf-8")


def _state() -> HubSpotActionState:
    return current_sandbox().store.hs_actions


def _body_of(kind: type) -> Any:
    try:
        data = json.loads(request.get_data(cache=True) or b"null")
    except ValueError as exc:
        abort(hs_error(400, f"Invalid input JSON on line {getattr(exc, 'lineno', 1)}: {exc}", "VALIDATION_ERROR"))
    if not isinstance(data, kind):
        abort(hs_error(400, f"Invalid input JSON: expected {'an array' if kind is list else 'an object'}",
                       "VALIDATION_ERROR"))
    return data


# ---------------------------------------------------------------------------------------------- owner checks
@bp.before_request
def check_owner_values() -> Response | None:
    """An API write naming a hubspot_owner_id that is no active owner is refused as HubSpot refuses it
    (VALIDATION_ERROR, INVALID_OWNER_ID). Only API writes: the sandbox's own records are seeded in-process."""
    if request.method not in ("POST", "PATCH") or not request.path.startswith("/crm/v3/objects/"):
        return None
    try:
        data = json.loads(request.get_data(cache=True) or b"null")
    except ValueError:
        return None  # the route answers malformed JSON itself
    if not isinstance(data, dict):
        return None
    items = [i for i in data.get("inputs") or [] if isinstance(i, dict)] if "inputs" in data else [data]
    values = {str(props["hubspot_owner_id"]) for i in items
              if isinstance(props := i.get("properties"), dict) and props.get("hubspot_owner_id") not in (None, "")}
    with current_sandbox().store.lock:
        owners = _state().owners
        bad = sorted(v for v in values if v not in owners or owners[v]["archived"])
    if not bad:
        return None
    problems = [{"isValid": False, "message": f"{v} is not a valid owner id", "error": "INVALID_OWNER_ID",
                 "name": "hubspot_owner_id"} for v in bad]
    return hs_error(400, "Property values were not valid: " + json.dumps(problems), "VALIDATION_ERROR",
                    errors=[{"message": p["message"], "in": "hubspot_owner_id", "code": "INVALID_OWNER_ID",
                             "subCategory": None, "context": {}} for p in problems],
                    context={"propertyName": ["hubspot_owner_id"]})


# ---------------------------------------------------------------------------------------------- owners
def _archived() -> bool:
    return request.args.get("archived", "false").lower() == "true"


@bp.route("/crm/v3/owners/", methods=["GET"])
@bp.route("/crm/v3/owners", methods=["GET"])
def list_owners() -> Response:
    """Owners, active ones unless archived=true; `email` filters, `limit`/`after` page (at most 500)."""
    try:
        limit = int(request.args.get("limit", "100"))
        after = int(request.args.get("after") or 0)
    except ValueError:
        return hs_error(400, "limit and after must be integers", "VALIDATION_ERROR")
    if not 1 <= limit <= 500:
        return hs_error(400, "limit must be between 1 and 500", "VALIDATION_ERROR")
    email = (request.args.get("email") or "").lower()
    with current_sandbox().store.lock:
        owners = [o for o in _state().owners.values() if o["archived"] == _archived()
                  and (not email or o["email"].lower() == email)]
    page = owners[after : after + limit]
    body: dict[str, Any] = {"results": page}
    if after + limit < len(owners):
        body["paging"] = {"next": {"after": str(after + limit)}}
    return _json(body)


@bp.route("/crm/v3/owners/<owner_id>", methods=["GET"])
def get_owner(owner_id: str) -> Response:
    """One owner by id (idProperty=id) or user id (idProperty=userId); an archived owner is 404 unless
    archived=true."""
    by = request.args.get("idProperty", "id")
    if by not in ("id", "userId"):
        return hs_error(400, f"idProperty must be id or userId, not {by}", "VALIDATION_ERROR")
    with current_sandbox().store.lock:
        found = next((o for o in _state().owners.values() if str(o[by]) == owner_id
                      and o["archived"] == _archived()), None)
    if found is None:
        return hs_error(404, f"No owner with {by} {owner_id} ({'archived' if _archived() else 'active'})",
                        "OBJECT_NOT_FOUND")
    return _json(found)


# ---------------------------------------------------------------------------------------------- lists (v3)
def _list_or_404(list_id: str) -> dict[str, Any]:
    found = _state().lists.get(list_id)
    if found is None:
        abort(hs_error(404, f"List {list_id} does not exist.", "OBJECT_NOT_FOUND", context={"listId": [list_id]}))
    return found


@bp.route("/crm/v3/lists/", methods=["POST"])
@bp.route("/crm/v3/lists", methods=["POST"])
def create_list() -> Response:
    """Create a list: {name, objectTypeId, processingType MANUAL|SNAPSHOT|DYNAMIC} -> 200 {"list": ...}."""
    data = _body_of(dict)
    name, kind = str(data.get("name") or "").strip(), data.get("processingType")
    if not name or kind not in ("MANUAL", "SNAPSHOT", "DYNAMIC"):
        return hs_error(400, "name and processingType (MANUAL, SNAPSHOT or DYNAMIC) are required", "VALIDATION_ERROR")
    if str(data.get("objectTypeId", "0-1")) != "0-1":
        return hs_error(400, "The sandbox keeps contact lists only (objectTypeId 0-1)", "VALIDATION_ERROR")
    with current_sandbox().store.lock:
        if any(x["name"].lower() == name.lower() for x in _state().lists.values()):
            return hs_error(400, f"A list named '{name}' already exists.", "VALIDATION_ERROR",
                            subCategory="ListError.LIST_NAME_ALREADY_EXISTS")
        created = _state().add_list(name, kind)
        return _json({"list": dict(created)})


@bp.route("/crm/v3/lists/<list_id>", methods=["GET"])
def get_list(list_id: str) -> Response:
    """One list -> 200 {"list": ...} with its size."""
    with current_sandbox().store.lock:
        _list_or_404(list_id)
        return _json({"list": _state().shaped_list(list_id)})


def _change_members(list_id: str, adding: bool) -> Response:
    """Add or remove record ids: only MANUAL and SNAPSHOT lists change by hand; unknown records are reported."""
    ids = [str(i) for i in _body_of(list)]
    if len(ids) > 100_000:
        return hs_error(400, "At most 100,000 record ids per request", "VALIDATION_ERROR")
    store = current_sandbox().store
    with store.lock:
        found = _list_or_404(list_id)
        if found["processingType"] == "DYNAMIC":
            return hs_error(400, f"List {list_id} is a DYNAMIC list: its filters decide its members, which cannot "
                            "be added or removed by hand.", "VALIDATION_ERROR",
                            subCategory="ListMembershipError.LIST_PROCESSING_TYPE_NOT_MANUAL")
        members = _state().members.setdefault(list_id, {})
        missing = [i for i in ids if store.hs_get("contacts", i) is None]
        changed: list[str] = []
        for rid in dict.fromkeys(i for i in ids if i not in missing):
            if adding and rid not in members:
                members[rid] = now_ms()
                changed.append(rid)
            elif not adding and rid in members:
                del members[rid]
                changed.append(rid)
        found["updatedAt"] = iso_ms()
    # HubSpot's API reference names the added ids recordIdsAdded; its OpenAPI spec (and so hubspot-api-client's
    # MembershipsUpdateResponse) recordsIdsAdded. The sandbox sends both so either reader sees them.
    added = changed if adding else []
    return _json({"recordIdsAdded": added, "recordsIdsAdded": added, "recordIdsRemoved": [] if adding else changed,
                  "recordIdsMissing": missing})


@bp.route("/crm/v3/lists/<list_id>/memberships/add", methods=["PUT"])
def add_members(list_id: str) -> Response:
    """Add records to a MANUAL/SNAPSHOT list; records already in it are in neither added nor missing."""
    return _change_members(list_id, True)


@bp.route("/crm/v3/lists/<list_id>/memberships/remove", methods=["PUT"])
def remove_members(list_id: str) -> Response:
    """Remove records from a MANUAL/SNAPSHOT list."""
    return _change_members(list_id, False)


@bp.route("/crm/v3/lists/<list_id>/memberships", methods=["GET"])
def read_members(list_id: str) -> Response:
    """A list's members in the order added: {results: [{recordId, membershipTimestamp}], paging}."""
    try:
        limit = min(250, int(request.args.get("limit", "100")))
        after = int(request.args.get("after") or 0)
    except ValueError:
        return hs_error(400, "limit and after must be integers", "VALIDATION_ERROR")
    with current_sandbox().store.lock:
        _list_or_404(list_id)
        items = sorted(_state().members.get(list_id, {}).items(), key=lambda kv: kv[1])
    body: dict[str, Any] = {"results": [{"recordId": rid, "membershipTimestamp": iso_ms(at / 1000)}
                                        for rid, at in items[after : after + limit]], "total": len(items)}
    if after + limit < len(items):
        body["paging"] = {"next": {"after": str(after + limit)}}
    return _json(body)


# ---------------------------------------------------------------------------------------------- sequences (v4)
def _user_id() -> str:
    user_id = request.args.get("userId")
    if not user_id:
        abort(hs_error(400, "The query parameter userId is required.", "VALIDATION_ERROR"))
    if user_id not in _state().users:
        abort(hs_error(404, f"User {user_id} does not exist in this account.", "OBJECT_NOT_FOUND"))
    return user_id


def _seated(user_id: str) -> None:
    """Sequences need the acting user to hold a Sales Hub or Service Hub (Professional+) seat."""
    if _state().users[user_id].get("seat") not in ("sales", "service"):
        abort(hs_error(403, f"User {user_id} does not have a Sales Hub or Service Hub seat; sequences need one.",
                       "MISSING_SCOPES", subCategory="SequencesError.USER_WITHOUT_SEAT"))


@bp.route("/automation/v4/sequences", methods=["GET"], strict_slashes=False)
def list_sequences() -> Response:
    """The account's sequences (the acting user needs a seat)."""
    with current_sandbox().store.lock:
        _seated(_user_id())
        results = list(_state().sequences.values())
    return _json({"total": len(results), "results": results})


@bp.route("/automation/v4/sequences/<sequence_id>", methods=["GET"])
def get_sequence(sequence_id: str) -> Response:
    """One sequence by id."""
    with current_sandbox().store.lock:
        _seated(_user_id())
        found = _state().sequences.get(sequence_id)
    if found is None:
        return hs_error(404, f"Sequence {sequence_id} does not exist.", "OBJECT_NOT_FOUND")
    return _json(found)


@bp.route("/automation/v4/sequences/enrollments", methods=["POST"])
def enroll() -> Response:
    """Enrol a contact: ?userId= with {sequenceId, contactId, senderEmail}. The user needs a seat, the sender
    e-mail must be one of the user's connected inboxes, and a contact is in at most one sequence at a time."""
    data = _body_of(dict)
    store = current_sandbox().store
    with store.lock:
        user_id = _user_id()
        _seated(user_id)
        sequence_id, contact_id = str(data.get("sequenceId") or ""), str(data.get("contactId") or "")
        sender = str(data.get("senderEmail") or "")
        if not (sequence_id and contact_id and sender):
            return hs_error(400, "sequenceId, contactId and senderEmail are required.", "VALIDATION_ERROR")
        sequence = _state().sequences.get(sequence_id)
        if sequence is None:
            return hs_error(404, f"Sequence {sequence_id} does not exist.", "OBJECT_NOT_FOUND")
        if sender.lower() not in [i.lower() for i in _state().users[user_id].get("inboxes") or []]:
            return hs_error(400, f"senderEmail {sender} is not a connected inbox of user {user_id}; connect the "
                            "inbox in HubSpot first.", "VALIDATION_ERROR",
                            subCategory="SequenceEnrollmentError.SENDER_INBOX_NOT_CONNECTED")
        contact = store.hs_get("contacts", contact_id)
        if contact is None:
            return hs_error(404, f"Contact {contact_id} does not exist.", "OBJECT_NOT_FOUND")
        current = _state().enrollments.get(contact_id)
        if current is not None:
            return hs_error(400, f"Contact {contact_id} is already enrolled in sequence {current['sequenceId']}.",
                            "VALIDATION_ERROR", subCategory="SequenceEnrollmentError.CONTACT_ALREADY_ENROLLED")
        stamp = iso_ms()
        enrolment = {"id": _state().next_id(), "toEmail": contact["properties"].get("email") or "",
                     "enrolledAt": stamp, "updatedAt": stamp, "sequenceId": sequence_id,
                     "sequenceName": sequence["name"], "enrolledBy": user_id, "enrolledByEmail": sender,
                     "contactId": contact_id}
        _state().enrollments[contact_id] = enrolment
    return _json({k: enrolment[k] for k in ("id", "toEmail", "enrolledAt", "updatedAt")})


@bp.route("/automation/v4/sequences/enrollments/contact/<contact_id>", methods=["GET"])
def contact_enrollment(contact_id: str) -> Response:
    """A contact's active enrolment (404 when it is in no sequence)."""
    with current_sandbox().store.lock:
        _seated(_user_id())
        found = _state().enrollments.get(contact_id)
    if found is None:
        return hs_error(404, f"Contact {contact_id} is not enrolled in a sequence.", "OBJECT_NOT_FOUND")
    return _json(found)
