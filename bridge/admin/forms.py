"""Form and query-string fields of the admin pages, checked into values or an OperationError that names them."""

from __future__ import annotations

from flask import request

from services import OperationError

PAGE_SIZE = 50


def _form_number(name: str, convert: type[int] | type[float], error: str) -> int | float | None:
    """A form field converted by `convert`, None when empty; a value it refuses is an OperationError."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return convert(raw)
    except ValueError:
        raise OperationError(error) from None


def form_int(name: str, *, label: str, low: int, high: int, default: int | None = None) -> int | None:
    """An integer form field within [low, high]; empty gives `default`; anything else is an OperationError."""
    value = _form_number(name, int, f"{label} must be a whole number")
    if value is None:
        return default
    if not low <= value <= high:
        raise OperationError(f"{label} must be between {low} and {high}")
    return int(value)


def form_float(name: str, *, label: str, low: float, high: float) -> float | None:
    """A number form field within [low, high], or None when empty."""
    value = _form_number(name, float, f"{label} must be a number")
    if value is not None and not low <= value <= high:
        raise OperationError(f"{label} must be between {low:g} and {high:g}")
    return value


def form_ids(error: str, *, required: bool = False) -> list[int]:
    """The ids ticked in a form's `ids` checkboxes; none (when `required`) or a non-number is an OperationError."""
    raw = request.form.getlist("ids")
    if (required and not raw) or not all(value.isdigit() for value in raw):
        raise OperationError(error)
    return [int(value) for value in raw]


def page_args() -> tuple[int, int]:
    """(page number from 1, offset) from the query string."""
    try:
        page = max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        page = 1
    return page, (page - 1) * PAGE_SIZE


def query_int(name: str) -> int | None:
    """A positive integer query parameter, or None when absent or not a number."""
    raw = request.args.get(name, "")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 2**31 else None
