"""Slack's Web API as a bot token sees it, for owner DMs: auth.test, users.lookupByEmail, conversations.open and
.history, chat.postMessage.

Faithful to the documented shapes (SLACK.md §3; docs.slack.dev/reference/methods): every answer is HTTP 200 with
`ok`, an error is `{"ok": false, "error": ...}` (missing_scope adds `needed` and `provided`), auth.test names the
token's scopes in the `x-oauth-scopes` header, and chat.postMessage is paced at about one message per second per
channel (HTTP 429 `ratelimited` with Retry-After). The workspace has a member for every e-mail registered through
the admin route and every CRM owner's e-mail the sandbox store knows (Salesforce Users, HubSpot owners), so a lead's
owner is found; `/_sandbox/slack/api` adds members and tokens with chosen scopes. A lost answer (the message posted,
the answer never arriving) is the generic fault kind lost_response on the path, e.g. ^/api/chat.postMessage.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, request

from sandbox.control import TokenBucket, retry_after_header
from sandbox.current import current_sandbox
from sandbox.slack_sink import validate_blocks

bp = Blueprint("sandbox_slack_api", __name__)

SANDBOX_BOT_TOKEN = "xoxb-sandbox-leadbridge"
ALL_SCOPES = ("users:read", "users:read.email", "chat:write", "im:write", "im:history", "channels:read")
TEAM_ID = "TSANDBOX"
# method -> the scope it needs (for a DM channel where the method depends on the conversation type)
NEEDED = {"users.lookupByEmail": "users:read.email", "chat.postMessage": "chat:write",
          "conversations.open": "im:write", "conversations.history": "im:history"}


@dataclass
class SlackWorkspace:
    """Members, bot tokens and direct-message conversations of the sandbox's Slack workspace."""

    members: dict[str, str] = field(default_factory=dict)  # e-mail (lower case) -> user id
    absent: set[str] = field(default_factory=set)  # e-mails that are not in the workspace though a CRM knows them
    tokens: dict[str, tuple[str, ...]] = field(default_factory=lambda: {SANDBOX_BOT_TOKEN: ALL_SCOPES})
    ims: dict[str, str] = field(default_factory=dict)  # user id -> D channel id
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # channel -> messages, oldest first
    limiter: TokenBucket = field(default_factory=lambda: TokenBucket(1.0, 3))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def member(self, email: str, crm_emails: Iterable[str]) -> str | None:
        """The user id of the member with `email` (CRM owners are members unless marked absent)."""
        key = email.strip().lower()
        with self.lock:
            if key in self.absent:
                return None
            if key not in self.members and key in {e.lower() for e in crm_emails if e}:
                self.members[key] = f"U{len(self.members) + 1:08d}"
            return self.members.get(key)

    def post(self, channel: str, text: str, blocks: Any, metadata: Any) -> dict[str, Any]:
        """Record a message in a conversation and return it."""
        with self.lock:
            ts = f"{time.time():.6f}"
            while any(m["ts"] == ts for m in self.history.get(channel, [])):
                ts = f"{float(ts) + 0.000001:.6f}"
            message = {"type": "message", "subtype": "bot_message", "text": text, "ts": ts, "bot_id": "BSANDBOX",
                       "username": "leadbridge"}
            if blocks:
                message["blocks"] = blocks
            if metadata:
                message["metadata"] = metadata
            self.history.setdefault(channel, []).append(message)
            return message

    def dms(self) -> list[dict[str, Any]]:
        """Every message posted in a DM, with its user (for tests and the demo)."""
        with self.lock:
            users = {channel: user for user, channel in self.ims.items()}
            return [{"channel": c, "user": users.get(c), **m} for c, msgs in self.history.items() for m in msgs]

    def clear(self) -> None:
        """Forget members, conversations, extra tokens and lost answers."""
        with self.lock:
            self.members.clear()
            self.absent.clear()
            self.tokens = {SANDBOX_BOT_TOKEN: ALL_SCOPES}
            self.ims.clear()
            self.history.clear()
            self.limiter.reset()


def _answer(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    resp = Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")
    for key, value in headers.items():
        resp.headers[key.replace("_", "-")] = value
    return resp


def _error(error: str, **extra: Any) -> Response:
    return _answer({"ok": False, "error": error, **extra})


def _args() -> dict[str, Any]:
    """Arguments as Slack takes them: query string, form fields or a JSON body."""
    args: dict[str, Any] = dict(request.args.items())
    args.update(request.form.items())
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            args.update(body)
    return args


def _crm_emails() -> list[str]:
    """E-mails of the CRM owners the sandbox store holds (Salesforce Users; HubSpot owners when it has them)."""
    store = current_sandbox().store
    emails = [str(u.get("Email") or "") for u in store.sf_records.get("User", {}).values()]
    hubspot = getattr(store, "hs_actions", None)  # HubSpot owners, where the sandbox keeps them
    for owner in (getattr(hubspot, "owners", None) or {}).values():
        emails.append(str(owner.get("email") or ""))
    return emails


@bp.route("/api/<method>", methods=["GET", "POST"])
def web_api(method: str) -> Response:
    """One Web API method call with a bot token (Authorization: Bearer xoxb-...)."""
    sandbox = current_sandbox()
    workspace: SlackWorkspace = sandbox.slack_api
    args = _args()
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else str(args.get("token") or "")
    if not token:
        return _error("not_authed")
    scopes = workspace.tokens.get(token)
    if scopes is None:
        return _error("invalid_auth")
    if method == "auth.test":
        return _answer({"ok": True, "url": "https://sandbox.slack.com/", "team": "Sandbox", "user": "leadbridge",
                        "team_id": TEAM_ID, "user_id": "USANDBOXBOT", "bot_id": "BSANDBOX", "is_enterprise_install": False},
                       x_oauth_scopes=",".join(scopes))
    needed = NEEDED.get(method)
    if needed is None:
        return _error("unknown_method")
    if needed not in scopes:
        return _error("missing_scope", needed=needed, provided=",".join(scopes))
    if method == "users.lookupByEmail":
        email = str(args.get("email") or "")
        if not email:
            return _error("invalid_arguments")
        user = workspace.member(email, _crm_emails())
        if user is None:
            return _error("users_not_found")
        return _answer({"ok": True, "user": {"id": user, "team_id": TEAM_ID, "name": email.split("@")[0],
                                             "deleted": False, "is_bot": False, "profile": {"email": email}}})
    if method == "conversations.open":
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if len(users) != 1 or users[0] not in workspace.members.values():
            return _error("user_not_found" if users else "users_list_not_supplied")
        with workspace.lock:
            channel = workspace.ims.setdefault(users[0], f"D{len(workspace.ims) + 1:08d}")
        return _answer({"ok": True, "channel": {"id": channel}})
    if method == "conversations.history":
        channel = str(args.get("channel") or "")
        if channel not in workspace.ims.values():
            return _error("channel_not_found")
        limit = min(max(int(str(args.get("limit") or 100)), 1), 999) if str(args.get("limit") or "100").isdigit() else 100
        with_meta = str(args.get("include_all_metadata") or "").lower() in ("1", "true")
        with workspace.lock:
            messages = list(reversed(workspace.history.get(channel, [])))[:limit]
        if not with_meta:
            messages = [{k: v for k, v in m.items() if k != "metadata"} for m in messages]
        return _answer({"ok": True, "messages": messages, "has_more": False, "pin_count": 0})
    return _post_message(workspace, args)


def _post_message(workspace: SlackWorkspace, args: dict[str, Any]) -> Response:
    channel = str(args.get("channel") or "")
    if channel.startswith("U") and channel in workspace.members.values():
        with workspace.lock:  # a user id posts to the app's DM with that user
            channel = workspace.ims.setdefault(channel, f"D{len(workspace.ims) + 1:08d}")
    if channel not in workspace.ims.values():
        return _error("channel_not_found")
    text, blocks, metadata = args.get("text") or "", args.get("blocks"), args.get("metadata")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return _error("invalid_blocks_format")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return _error("invalid_metadata_format")
    if not text and not blocks:
        return _error("no_text")
    if blocks is not None and validate_blocks(blocks) is not None:
        return _error("invalid_blocks")
    if metadata is not None and (not isinstance(metadata, dict) or not metadata.get("event_type")
                                 or not isinstance(metadata.get("event_payload"), dict)):
        return _error("invalid_metadata_schema")
    ok, wait = workspace.limiter.take("chat:" + channel)
    if not ok:
        return _answer({"ok": False, "error": "ratelimited"}, 429, Retry_After=retry_after_header(wait))
    message = workspace.post(channel, str(text), blocks, metadata)
    return _answer({"ok": True, "channel": channel, "ts": message["ts"], "message": message})
