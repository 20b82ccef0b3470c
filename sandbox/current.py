"""The running sandbox CRM of the current request, for the sandbox's blueprints."""

from __future__ import annotations

from typing import Any

from flask import current_app


def current_sandbox() -> Any:
    """This app's `sandbox.server.SandboxCRM` (typed Any: the blueprints sit below the server that mounts them)."""
    return current_app.extensions["sandbox"]
