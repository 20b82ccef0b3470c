"""The Flask side of leadbridge: webhook endpoints, admin UI and API, health and metrics."""

from __future__ import annotations

from typing import Any, Mapping

from flask import Flask

from bridge import admin, api, errors, extensions, health, metrics, security, webhooks
from core.runtime import service_urls
from core.settings import load_settings


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app from settings (environment, `.env`, then `overrides`)."""
    settings = load_settings(overrides)
    urls = service_urls(settings)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = settings.resolved_secret_key()
    app.config["LEADBRIDGE_SETTINGS"] = settings
    extensions.init_app(app, settings, urls)
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(webhooks.bp)
    security.init_app(app)
    admin.init_app(app)
    api.init_app(app)
    return app
