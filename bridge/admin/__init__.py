"""The admin UI: server-rendered pages (Jinja and plain forms) under /admin.

Every page needs a logged-in user; every change needs the admin role and the session's CSRF token.
The pages call the same operations (services) as the JSON API.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the admin pages."""
    from bridge.admin import display
    from bridge.admin.pages import bp
    from bridge.admin.views import register

    register(bp)
    app.register_blueprint(bp)
    display.init_app(app)
