"""The admin pages, one module per page; `register` attaches them to the admin blueprint."""

from __future__ import annotations

from flask import Blueprint


def register(bp: Blueprint) -> None:
    """Import the page modules (their routes attach to `bp` on import)."""
    from bridge.admin.views import (  # noqa: F401
        alerts,
        audit,
        auth,
        bands,
        dead_letters,
        deliveries,
        fields,
        leads,
        mappings,
        models,
        overview,
        sources,
        users,
        value,
    )
