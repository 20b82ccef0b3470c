"""Admin operations shared by the web pages, the JSON API and the CLI: plain functions over a session.

Each function that changes configuration writes its audit entry in the caller's transaction, so the
change and its record commit together. None of them reads the Flask request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Row = TypeVar("Row")


class OperationError(ValueError):
    """An admin operation was refused; `status` is the HTTP status that fits, the message says why."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class NotFound(OperationError):
    """The thing an operation names does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404, "not_found")


class Conflict(OperationError):
    """The operation conflicts with the current state (a duplicate name, nothing configured, ...)."""

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message, 409, code)


MAX_DB_INT = 2_147_483_647  # ids are 32-bit on PostgreSQL for most tables; larger ones cannot exist


def check_id(value: int, what: str) -> int:
    """Refuse ids no row can have (a huge id must be a 404, not a database overflow)."""
    if not 1 <= value <= MAX_DB_INT:
        raise NotFound(f"no {what} {value}")
    return value


def get_row(session: Session, model: type[Row], row_id: int, what: str) -> Row:
    """The `model` row with this id, or NotFound naming `what`."""
    row = session.get(model, check_id(row_id, what))
    if row is None:
        raise NotFound(f"no {what} {row_id}")
    return row


def clean_text(value: str | None, what: str, *, max_length: int, required: bool = True) -> str | None:
    """Trim a single-line text input and refuse control characters, empties (when required) and overlong ones."""
    text = (value or "").strip()
    if not text:
        if required:
            raise OperationError(f"{what} is required")
        return None
    if len(text) > max_length:
        raise OperationError(f"{what} must be at most {max_length} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise OperationError(f"{what} must not contain control characters")
    return text
