"""The JSON API under /api: token-authenticated, described by the OpenAPI document at /api/openapi.json.

Routes are declared with `endpoint(...)`, which records what the OpenAPI document needs (body, query,
responses, role) and does the shared work: authenticate the bearer token, check the role, validate the
query and body with pydantic (400 naming each bad field), and serialise the response model.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the API routes and the OpenAPI document."""
    from bridge.api import routes, spec  # noqa: F401  (routes attach to bp on import)
    from bridge.api.endpoints import bp

    app.register_blueprint(bp)
