"""The OpenAPI 3.1 document, built from the declared routes and their pydantic models (so it matches them)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bridge.api.endpoints import OPERATIONS, Operation, bp
from bridge.api.schemas import Error

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def _openapi_path(rule: str) -> str:
    return "/api" + _PARAM.sub(r"{\1}", rule)


def _query_parameters(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param = {"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    schemas.update(schema.get("$defs", {}))
    return params


@lru_cache(maxsize=1)
def build_document() -> dict[str, Any]:
    """The whole document (built once per process)."""
    models: set[tuple[type[BaseModel], str]] = {(Error, "serialization")}
    for op in OPERATIONS:
        if op.body is not None:
            models.add((op.body, "validation"))
        for model, _ in op.responses.values():
            if model is not None:
                models.add((model, "serialization"))
    refs, top = models_json_schema(sorted(models, key=lambda m: (m[0].__name__, m[1])), ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(_openapi_path(op.rule), {})[op.method.lower()] = _operation(op, refs, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadbridge admin API",
            "version": "1",
            "description": "The admin console's operations as JSON. Authenticate with `Authorization: Bearer "
                           "<token>` (create tokens on the admin UI's API tokens page). Viewer tokens may read; "
                           "changes need an admin token.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    }


def _operation(op: Operation, refs: dict[Any, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    description = op.description + ("\n\nNeeds the admin role." if op.role == "admin" else "")
    doc["description"] = description.strip()
    params = [{"name": name, "in": "path", "required": True, "schema": schema}
              for name, schema in op.path_params.items()]
    if op.query is not None:
        params.extend(_query_parameters(op.query, schemas))
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": refs[(op.body, "validation")]}}}
    responses: dict[str, Any] = {}
    for status, (model, text) in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": text or str(status)}
        if model is not None:
            entry["content"] = {"application/json": {"schema": refs[(model, "serialization")]}}
        responses[str(status)] = entry
    # Anything else (e.g. 405, 429, 503) still comes as the JSON error shape.
    responses["default"] = {"description": "error", "content": {"application/json": {
        "schema": refs[(Error, "serialization")]}}}
    doc["responses"] = responses
    return doc


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 document describing this API (no token needed to read it)."""
    return jsonify(build_document())
