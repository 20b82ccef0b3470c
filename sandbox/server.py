"""SandboxCRM: the Flask app that emulates HubSpot, Salesforce and a Slack webhook, served by a threaded werkzeug server."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox import admin, hubspot_actions_api, hubspot_api, salesforce_api, slack_api, slack_sink
from sandbox.control import (
    FaultInjector,
    RequestLog,
    SlidingWindowLimiter,
    TokenBucket,
    retry_after_header,
)
from sandbox.ids import DEFAULT_HUBSPOT_PORTAL_ID, correlation_id, sf_id18
from sandbox.store import SandboxStore
from sandbox.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

DEFAULT_HUBSPOT_TOKEN = "pat-sandbox-leadbridge"
DEFAULT_HUBSPOT_APP_USER_ID = 2000001
DEFAULT_SF_USERNAME = "admin@sandbox.leadbridge"
DEFAULT_SF_PASSWORD = "sandbox-password"
DEFAULT_SF_TOKEN = "SANDBOXTOKEN"
DEFAULT_SF_ORG_ID = sf_id18("00DSb0000000001")
DEFAULT_SF_SESSION = DEFAULT_SF_ORG_ID[:15] + "!AQsandbox.leadbridge.session"
SLACK_WEBHOOK_PATH = "/services/TSANDBOX/BSANDBOX/sandboxsecret"


@dataclass
class SandboxConfig:
    """Credentials and limits the sandbox enforces. All credentials are sandbox-only placeholders."""

    hubspot_tokens: set[str] = field(default_factory=lambda: {DEFAULT_HUBSPOT_TOKEN})
    hubspot_rate_max: int = 190  # requests per rolling window per token (Pro/Enterprise private apps)
    hubspot_rate_window: float = 10.0
    hubspot_search_per_second: int = 5
    hubspot_daily_limit: int = 1_000_000
    hubspot_portal_id: int = DEFAULT_HUBSPOT_PORTAL_ID
    # The HubSpot user a private-app token acts as: the creator (hs_created_by_user_id) of what the API creates.
    hubspot_app_user_id: int = DEFAULT_HUBSPOT_APP_USER_ID
    # Scopes taken from every private-app token (a drill or a test of a missing scope: HubSpot answers 403).
    hubspot_revoked_scopes: set[str] = field(default_factory=set)
    salesforce_users: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_SF_USERNAME: DEFAULT_SF_PASSWORD + DEFAULT_SF_TOKEN})
    salesforce_session_id: str = DEFAULT_SF_SESSION
    salesforce_org_id: str = DEFAULT_SF_ORG_ID
    salesforce_daily_api_max: int = 15000
    salesforce_query_batch: int = 2000
    slack_rate: float = 1.0
    slack_burst: int = 3
    data_dir: str | None = None
    admin_token: str | None = None


def _family(path: str) -> str:
    if path.startswith("/_sandbox"):
        return "admin"
    if path.startswith(("/crm/", "/automation/")):
        return "hubspot"
    if path.startswith(("/services/data", "/services/Soap", "/services/oauth2")):
        return "salesforce"
    if path.startswith("/services/"):
        return "slack"
    if path.startswith("/api/"):
        return "slack_api"
    return "other"


def _fault_response(family: str, status: int, body: Any, retry_after: float | None) -> Response:
    """Build the vendor-shaped error an injected fault answers with."""
    if body is not None:
        text = body if isinstance(body, str) else json.dumps(body)
        ctype = "text/plain; charset=utf-8" if isinstance(body, str) else "application/json;charset=utf-8"
    elif family == "hubspot":
        ctype = "application/json;charset=utf-8"
        if status == 429:
            text = json.dumps({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                               "errorType": "RATE_LIMIT", "correlationId": correlation_id(),
                               "policyName": "TEN_SECONDLY_ROLLING", "groupName": "publicapi:sandbox-fault"})
        else:
            category, message = {
                400: ("VALIDATION_ERROR", "Property values were not valid (injected fault)"),
                401: ("INVALID_AUTHENTICATION", "Authentication credentials not found. (injected fault)"),
                403: ("MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call. "
                                        "(injected fault)"),
                404: ("OBJECT_NOT_FOUND", "resource not found (injected fault)"),
                409: ("CONFLICT", "Conflict (injected fault)"),
            }.get(status, ("INTERNAL_ERROR", "internal error (injected fault)"))
            text = json.dumps({"status": "error", "message": message, "correlationId": correlation_id(),
                               "category": category})
    elif family == "salesforce":
        ctype = "application/json;charset=UTF-8"
        code, message = {
            400: ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "A validation rule rejected the record (injected fault)"),
            401: ("INVALID_SESSION_ID", "Session expired or invalid"),
            403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
            404: ("NOT_FOUND", "The requested resource does not exist"),
            503: ("SERVER_UNAVAILABLE", "Server unavailable (injected fault)"),
        }.get(status, ("UNKNOWN_EXCEPTION", "An unexpected error occurred (injected fault)"))
        text = json.dumps([{"message": message, "errorCode": code}])
    elif family == "slack_api":  # the Web API: JSON with ok:false (a 429 says ratelimited)
        ctype = "application/json; charset=utf-8"
        text = json.dumps({"ok": False, "error": "ratelimited" if status == 429 else "internal_error"})
    else:
        ctype = "text/plain; charset=utf-8"
        text = {400: "invalid_payload", 403: "invalid_token", 404: "no_service", 410: "channel_is_archived",
                429: "rate_limited"}.get(status, "rollup_error")
    resp = Response(text, status=status, content_type=ctype)
    if retry_after is not None or status == 429:
        resp.headers["Retry-After"] = retry_after_header(retry_after if retry_after is not None else 1)
    return resp


def _drop_connection() -> None:
    """Shut the request's socket: the client sees the connection close with no answer."""
    g.dropped = True
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _QuietHandler(WSGIRequestHandler):
    """Request handler without per-request access logs (the admin request log records every call)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the access log line."""


class SandboxCRM:
    """A local HubSpot + Salesforce + Slack emulator, startable in-process or as a command.

    >>> sandbox = SandboxCRM(); base_url = sandbox.start(port=0); ...; sandbox.stop()
    """

    def __init__(self, config: SandboxConfig | None = None, **overrides: Any) -> None:
        self.config = config or SandboxConfig()
        for key, value in overrides.items():
            if not hasattr(self.config, key):
                raise TypeError(f"unknown sandbox setting {key!r}")
            setattr(self.config, key, value)
        cfg = self.config
        self.store = SandboxStore(sf_daily_api_max=cfg.salesforce_daily_api_max, hubspot_portal_id=cfg.hubspot_portal_id)
        self.faults = FaultInjector()
        self.requests = RequestLog()
        self.hs_limiter = SlidingWindowLimiter(cfg.hubspot_rate_max, cfg.hubspot_rate_window)
        self.hs_search_limiter = SlidingWindowLimiter(cfg.hubspot_search_per_second, 1.0)
        self.slack_limiter = TokenBucket(cfg.slack_rate, cfg.slack_burst)
        self.slack = slack_sink.SlackMessages()
        self.slack_api = slack_api.SlackWorkspace()
        self.sf_sessions: set[str] = {cfg.salesforce_session_id}
        self.sf_cursors = salesforce_api.QueryCursors()
        self.webhooks = WebhookDispatcher(self.store)
        self._hs_daily = 0
        self._daily_lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        if cfg.data_dir:
            self.store.load(self._data_file())
        self.app = self._create_app()

    # ---------------------------------------------------------------- app
    def _create_app(self) -> Flask:
        app = Flask("leadbridge_sandbox")
        app.extensions["sandbox"] = self
        app.before_request(self._before)
        app.after_request(self._after)
        # hubspot_actions_api adds its routes (owners, lists, sequences) to the HubSpot blueprint: same auth, limits.
        for bp in (admin.bp, hubspot_actions_api.bp, salesforce_api.bp, slack_sink.bp, slack_api.bp):
            app.register_blueprint(bp)
        app.register_error_handler(404, self._not_found)
        app.register_error_handler(405, self._not_allowed)
        app.register_error_handler(500, self._server_error)
        return app

    def _before(self) -> Response | None:
        g.t0 = time.time()
        g.family = _family(request.path)
        if g.family == "hubspot":
            with self._daily_lock:
                self._hs_daily += 1
        if g.family == "admin":
            return None
        fault = self.faults.take(request.method, request.path)
        if fault is None:
            return None
        g.fault = fault.id
        if fault.kind == "slow":
            time.sleep(fault.delay)
            return None
        if fault.kind == "lost_response":
            g.lose_response = True  # handled normally; _after drops the connection before the answer goes out
            return None
        if fault.kind == "drop":
            _drop_connection()
            return Response(status=500)  # never reaches the client: the socket is already shut
        return _fault_response(g.family, int(fault.status), fault.body, fault.retry_after)

    def _after(self, resp: Response) -> Response:
        token = getattr(g, "sandbox_token", None)
        if token is None and g.get("family") in ("hubspot", "salesforce"):
            header = request.headers.get("Authorization", "")
            token = hashlib.sha256(header.encode()).hexdigest()[:10] if header else None
        lost = bool(g.get("lose_response"))
        # Logged before a lost answer's connection drops: the client's retry must find this request in the log.
        self.requests.add(t=g.get("t0", time.time()), t_end=time.time(), method=request.method, path=request.path,
                          family=g.get("family", "other"),
                          status=0 if g.get("dropped") or lost else resp.status_code,
                          fault=g.get("fault"), retry_after=resp.headers.get("Retry-After"), token=token)
        if lost:
            _drop_connection()
        return resp

    def _not_found(self, _exc: Exception) -> Response:
        family = _family(request.path)
        if family == "hubspot":
            return hubspot_api.hs_error(404, f"Unable to route {request.method} {request.path}", "OBJECT_NOT_FOUND")
        if family == "salesforce":
            return salesforce_api.sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        if family == "slack":
            return Response("no_service", status=404, content_type="text/plain; charset=utf-8")
        return Response(json.dumps({"error": f"no route {request.method} {request.path}"}), status=404,
                        content_type="application/json")

    def _not_allowed(self, _exc: Exception) -> Response:
        family = _family(request.path)
        if family == "salesforce":
            return salesforce_api.sf_error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed.")
        if family == "hubspot":
            return hubspot_api.hs_error(405, f"HTTP {request.method} is not supported by this resource", "VALIDATION_ERROR")
        return Response(json.dumps({"error": f"method {request.method} not allowed"}), status=405,
                        content_type="application/json")

    def _server_error(self, exc: Exception) -> Response:
        log.exception("sandbox.unhandled_error", extra={"path": request.path})
        family = _family(request.path)
        if family == "salesforce":
            return salesforce_api.sf_error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred in the sandbox")
        if family == "slack":
            return Response("rollup_error", status=500, content_type="text/plain; charset=utf-8")
        return hubspot_api.hs_error(500, "internal sandbox error", "INTERNAL_ERROR")

    # ---------------------------------------------------------------- helpers used by the routes
    def new_sf_session(self) -> str:
        """Mint a session id (the org id, '!', random text), valid until the sandbox stops."""
        session = f"{self.config.salesforce_org_id[:15]}!AQ{secrets.token_urlsafe(40)}"
        self.sf_sessions.add(session)
        return session

    def hs_daily_count(self) -> int:
        """HubSpot requests answered since start."""
        with self._daily_lock:
            return self._hs_daily

    def reset(self) -> None:
        """Drop records, faults, logs, Slack messages and limiter state."""
        self.store.reset()
        self.faults.clear()
        self.requests.clear()
        self.hs_limiter.reset()
        self.hs_search_limiter.reset()
        self.slack_limiter.reset()
        self.slack.clear()
        self.slack_api.clear()
        self.config.hubspot_revoked_scopes.clear()

    def _data_file(self) -> Path:
        return Path(self.config.data_dir or ".") / "sandbox-crm.json"

    def save(self) -> Path | None:
        """Persist records to <data_dir>/sandbox-crm.json; None without a data dir."""
        if not self.config.data_dir:
            return None
        path = self._data_file()
        self.store.save(path)
        return path

    # ---------------------------------------------------------------- lifecycle
    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve in a background thread; returns the base URL (port 0 picks a free port)."""
        if self._server is not None:
            return self.base_url
        self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        actual = self._server.socket.getsockname()[1]
        self.base_url = f"http://{host}:{actual}"
        server = self._server
        # A short poll interval keeps stop() fast (werkzeug checks for shutdown once per interval).
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), name="sandbox-crm",
                                        daemon=True)
        self._thread.start()
        self.webhooks.start()
        return self.base_url

    def serve_forever(self, port: int = 8765, host: str = "127.0.0.1") -> None:
        """Serve in the foreground until interrupted (the standalone command)."""
        self.start(port=port, host=host)
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and sending webhooks; saves records when a data dir is set."""
        self.webhooks.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.save()

    def __enter__(self) -> SandboxCRM:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
