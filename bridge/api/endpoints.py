"""The API blueprint and its `endpoint` decorator: validation, authentication, errors and the operation list.

Routes are declared with `endpoint(...)`, which records what the OpenAPI document needs (body, query,
responses, role) and does the shared work: authenticate the bearer token, check the role, validate the
query and body with pydantic (400 naming each bad field), and serialise the response model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from bridge import security
from services import OperationError

bp = Blueprint("api", __name__, url_prefix="/api")

PUBLIC = frozenset({"api.openapi"})
MAX_BODY = 256 * 1024


@dataclass
class Operation:
    """What the OpenAPI document says about one route."""

    rule: str
    method: str
    summary: str
    tag: str
    role: str
    operation_id: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: dict[int, tuple[type[BaseModel] | None, str]] = field(default_factory=dict)
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""


OPERATIONS: list[Operation] = []
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def _path_params(rule: str, overrides: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for converter, name in _PARAM.findall(rule):
        if converter == "int":
            params[name] = {"type": "integer", "minimum": 1, "maximum": 2_147_483_647}
        else:
            params[name] = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9._-]+$"}
    params.update(overrides or {})
    return params


def endpoint(
    rule: str,
    method: str,
    *,
    summary: str,
    tag: str,
    role: str = "viewer",
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: dict[int, tuple[type[BaseModel] | None, str]],
    path_params: dict[str, dict[str, Any]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an API route; the view gets `body=` / `query=` models and returns (model | None, status)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        op = Operation(rule=rule, method=method.upper(), summary=summary, tag=tag, role=role,
                       operation_id=view.__name__, body=body, query=query, responses=responses,
                       path_params=_path_params(rule, path_params), description=(view.__doc__ or "").strip())
        OPERATIONS.append(op)

        @wraps(view)
        def wrapper(**kwargs: Any) -> ResponseReturnValue:
            principal = security.current()
            if role == "admin" and (principal is None or not principal.is_admin):
                return _error(403, "forbidden", "this needs the admin role")
            if query is not None:
                kwargs["query"] = _validate(query, _query_args(query), "query")
            if body is not None:
                kwargs["body"] = _validate(body, _json_body(), "body")
            for name, schema in op.path_params.items():
                value = kwargs.get(name)
                if isinstance(value, int) and not schema.get("minimum", 1) <= value <= schema.get("maximum", value):
                    return _error(404, "not_found", f"no such {name.removesuffix('_id')} {value}")
                if isinstance(value, str) and "enum" in schema and value not in schema["enum"]:
                    return _error(404, "not_found", f"{name} must be one of {', '.join(schema['enum'])}")
            result, status = view(**kwargs)
            if result is None:
                return Response(status=status)
            if isinstance(result, Response):  # a download (CSV); the spec says so in its responses
                return result, status
            return jsonify(result.model_dump(mode="json")), status

        bp.add_url_rule(rule, endpoint=view.__name__, view_func=wrapper, methods=[method.upper()])
        return wrapper

    return decorate


class BadRequest(Exception):
    """A request the API refuses before any operation runs."""

    def __init__(self, status: int, error: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.details = status, error, message, details


def _query_args(model: type[BaseModel]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in request.args:
            continue
        is_list = getattr(info.annotation, "__origin__", None) is list
        data[name] = request.args.getlist(name) if is_list else request.args.get(name)
    return data


def _json_body() -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest(413, "payload_too_large", f"the body may be at most {MAX_BODY} bytes")
    if (request.mimetype or "") != "application/json":
        raise BadRequest(415, "unsupported_content_type", "send the body as Content-Type: application/json")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        raise BadRequest(413, "payload_too_large", f"the body may be at most {MAX_BODY} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "malformed_json", "the body is not valid JSON") from None


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [{"loc": ".".join(str(p) for p in (where, *err["loc"])), "msg": err["msg"]} for err in exc.errors()]
        summary = "; ".join(f"{d['loc']}: {d['msg']}" for d in details[:5])
        raise BadRequest(400, "invalid_request", summary, details) from None


def _error(status: int, error: str, message: str, **extra: Any) -> ResponseReturnValue:
    body = {"error": error, "message": message, **{k: v for k, v in extra.items() if v is not None}}
    headers = {"WWW-Authenticate": 'Bearer realm="leadbridge"'} if status == 401 else {}
    return jsonify(body), status, headers


@bp.before_request
def _authenticate() -> ResponseReturnValue | None:
    """Every API route but the OpenAPI document needs a valid bearer token."""
    if request.endpoint in PUBLIC:
        return None
    if security.token_principal() is None:
        return _error(401, "unauthorized", "send a valid API token as `Authorization: Bearer <token>`")
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> ResponseReturnValue:
    return _error(exc.status, exc.error, exc.message, details=exc.details)


@bp.errorhandler(OperationError)
def _operation_error(exc: OperationError) -> ResponseReturnValue:
    return _error(exc.status, exc.code, exc.message)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    return _error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")
