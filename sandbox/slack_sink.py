"""A Slack incoming-webhook sink: validates payloads like Slack, records messages, rate-limits per webhook."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from flask import Blueprint, Response, request

from sandbox.control import retry_after_header
from sandbox.current import current_sandbox

bp = Blueprint("sandbox_slack", __name__)

# Documented webhook errors (SLACK.md §1.1): name -> HTTP status. Using one as the last URL segment, or setting it
# through the admin API, makes the webhook answer with it.
WEBHOOK_ERRORS = {
    "invalid_payload": 400,
    "no_text": 400,
    "too_many_attachments": 400,
    "user_not_found": 400,
    "action_prohibited": 403,
    "posting_to_general_channel_denied": 403,
    "invalid_token": 403,
    "channel_not_found": 404,
    "no_service": 404,
    "channel_is_archived": 410,
    "rollup_error": 500,
}
_RESERVED = {"data", "Soap", "oauth2", "apexrest"}


class SlackMessages:
    """Messages the sink accepted, per webhook path, plus per-path forced errors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.forced: dict[str, str] = {}

    def add(self, path: str, payload: dict[str, Any]) -> None:
        """Record one accepted message."""
        with self._lock:
            self.messages.append({"path": path, "t": time.time(), "payload": payload})

    def list(self, path: str | None = None, since: float = 0.0) -> list[dict[str, Any]]:
        """Return recorded messages, optionally for one webhook path."""
        with self._lock:
            return [m for m in self.messages if m["t"] >= since and (path is None or m["path"] == path)]

    def clear(self) -> None:
        """Forget recorded messages and forced errors."""
        with self._lock:
            self.messages.clear()
            self.forced.clear()


def _text(status: int, body: str, **headers: str) -> Response:
    resp = Response(body, status=status, content_type="text/plain; charset=utf-8")
    for key, value in headers.items():
        resp.headers[key.replace("_", "-")] = value
    return resp


def _check_text_object(obj: Any, plain_only: bool = False, max_len: int = 3000) -> bool:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn") or not isinstance(obj.get("text"), str):
        return False
    if plain_only and obj["type"] != "plain_text":
        return False
    return 0 < len(obj["text"]) <= max_len


def _check_element(el: Any) -> bool:
    if not isinstance(el, dict):
        return False
    if el.get("type") == "button":
        return (_check_text_object(el.get("text"), plain_only=True, max_len=75)
                and len(str(el.get("action_id", ""))) <= 255 and len(str(el.get("url", ""))) <= 3000
                and len(str(el.get("value", ""))) <= 2000 and el.get("style", "primary") in ("primary", "danger"))
    if el.get("type") == "image":
        return isinstance(el.get("image_url"), str) and isinstance(el.get("alt_text"), str)
    return el.get("type") in ("overflow", "datepicker", "static_select", "users_select")


def validate_blocks(blocks: Any) -> str | None:
    """Return a reason when blocks break Block Kit's structure or limits, else None."""
    if not isinstance(blocks, list):
        return "blocks must be an array"
    if len(blocks) > 50:
        return "no more than 50 blocks"
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            return f"block {i} is not an object"
        btype = block.get("type")
        if len(str(block.get("block_id", ""))) > 255:
            return f"block {i}: block_id longer than 255"
        if btype == "header":
            if not _check_text_object(block.get("text"), plain_only=True, max_len=150):
                return f"block {i}: header needs plain_text of at most 150 characters"
        elif btype == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and fields is None:
                return f"block {i}: section needs text or fields"
            if text is not None and not _check_text_object(text):
                return f"block {i}: section text must be a text object of at most 3000 characters"
            if fields is not None and (not isinstance(fields, list) or len(fields) > 10
                                       or not all(_check_text_object(f, max_len=2000) for f in fields)):
                return f"block {i}: section fields must be at most 10 text objects of at most 2000 characters"
            if "accessory" in block and not _check_element(block["accessory"]):
                return f"block {i}: invalid accessory"
        elif btype == "context":
            els = block.get("elements")
            if not isinstance(els, list) or not 0 < len(els) <= 10 or not all(
                    _check_text_object(e) or (isinstance(e, dict) and e.get("type") == "image") for e in els):
                return f"block {i}: context needs 1-10 text or image elements"
        elif btype == "actions":
            els = block.get("elements")
            if not isinstance(els, list) or not 0 < len(els) <= 25 or not all(_check_element(e) for e in els):
                return f"block {i}: actions needs 1-25 valid elements"
        elif btype == "divider":
            continue
        elif btype == "image":
            if not _check_element(block):
                return f"block {i}: image needs image_url and alt_text"
        else:
            return f"block {i}: unknown block type {btype!r}"
    return None


@bp.route("/services/<team>/<bot>/<secret>", methods=["POST"])
def incoming_webhook(team: str, bot: str, secret: str) -> Response:
    """Accept a message like Slack's incoming webhooks: 200 `ok`, or a status with a short plain-text error."""
    sandbox = current_sandbox()
    if team in _RESERVED:
        return Response(json.dumps([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
                        status=404, content_type="application/json;charset=UTF-8")
    path = request.path
    forced = sandbox.slack.forced.get(path) or (secret if secret in WEBHOOK_ERRORS else None)
    if forced:
        return _text(WEBHOOK_ERRORS[forced], forced)
    ok, wait = sandbox.slack_limiter.take(path)
    if not ok:
        return _text(429, "rate_limited", Retry_After=retry_after_header(wait))
    raw = request.get_data()
    ctype = request.headers.get("Content-Type", "")
    try:
        if ctype.startswith("application/x-www-form-urlencoded"):
            payload = json.loads(parse_qs(raw.decode())["payload"][0])
        else:
            payload = json.loads(raw)
    except (ValueError, KeyError, UnicodeDecodeError):
        return _text(400, "invalid_payload")
    if not isinstance(payload, dict):
        return _text(400, "invalid_payload")
    text, blocks, attachments = payload.get("text"), payload.get("blocks"), payload.get("attachments")
    if not text and not blocks and not attachments:
        return _text(400, "no_text")
    if text is not None and not isinstance(text, str):
        return _text(400, "invalid_payload")
    if attachments is not None and (not isinstance(attachments, list) or len(attachments) > 100):
        return _text(400, "too_many_attachments" if isinstance(attachments, list) else "invalid_payload")
    if blocks is not None and validate_blocks(blocks) is not None:
        return _text(400, "invalid_payload")
    sandbox.slack.add(path, payload)
    return Response("ok", status=200, content_type="text/html")
