"""JSON error bodies for every HTTP error, so no client ever sees an HTML page or a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


def json_error(status: int, error: str, message: str, **extra: object) -> ResponseReturnValue:
    """A JSON error response: {"error": code, "message": text, ...}."""
    body = {"error": error, "message": message, **extra}
    return jsonify(body), status


def init_app(app: Flask) -> None:
    """Register JSON handlers for HTTP errors and unexpected exceptions."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        name = (exc.name or "error").lower().replace(" ", "_")
        return json_error(exc.code or 500, name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        log.exception("http.unhandled_exception")
        return json_error(InternalServerError.code, "internal_error", "unexpected error; see the server log")
