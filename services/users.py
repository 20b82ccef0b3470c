"""User and API-token operations with their audit entries (used by the admin pages, the API and the CLI)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from services import Conflict, NotFound, OperationError, check_id, get_row
from storage import users as store
from storage.audit import record
from storage.models import ApiToken, User


def get_user(session: Session, user_id: int) -> User:
    """A user by id, or NotFound."""
    return get_row(session, User, user_id, "user")


def add_user(session: Session, actor: str, *, email: str, password: str, role: str) -> User:
    """Create a user (password hashed with argon2id)."""
    try:
        user = store.create_user(session, email=email, password=password, role=role)
    except store.UserError as exc:
        if "already exists" in str(exc):
            raise Conflict(str(exc)) from None
        raise OperationError(str(exc)) from None
    record(session, actor=actor, action="user.add", target=f"user:{user.id}", after={"email": user.email,
                                                                                      "role": user.role})
    return user


def _not_self(user_id: int, acting_user_id: int | None, doing: str) -> None:
    # An admin locking themselves out by accident is worse than asking a colleague.
    if acting_user_id is not None and user_id == acting_user_id:
        raise Conflict(f"you cannot {doing} yourself; ask another admin")


def change_role(session: Session, actor: str, user_id: int, role: str, *, acting_user_id: int | None = None) -> User:
    """Give a user another role (the last admin stays an admin; nobody changes their own role)."""
    _not_self(user_id, acting_user_id, "change the role of")
    user = get_user(session, user_id)
    before = user.role
    try:
        store.set_role(session, user, role)
    except store.UserError as exc:
        raise (Conflict(str(exc)) if "last admin" in str(exc) else OperationError(str(exc))) from None
    if before != user.role:
        record(session, actor=actor, action="user.role", target=f"user:{user.id}", before={"role": before},
               after={"role": user.role})
    return user


def remove_user(session: Session, actor: str, user_id: int, *, acting_user_id: int | None = None) -> None:
    """Delete a user and their tokens (never the last admin, never oneself)."""
    _not_self(user_id, acting_user_id, "remove")
    user = get_user(session, user_id)
    try:
        store.delete_user(session, user)
    except store.UserError as exc:
        raise Conflict(str(exc)) from None
    record(session, actor=actor, action="user.remove", target=f"user:{user_id}", before={"email": user.email,
                                                                                          "role": user.role})


def create_token(session: Session, actor: str, user_id: int, name: str) -> store.NewToken:
    """Make an API token for a user; the plaintext is in the result and nowhere else."""
    user = get_user(session, user_id)
    try:
        token = store.create_token(session, user, name)
    except store.UserError as exc:
        raise OperationError(str(exc)) from None
    record(session, actor=actor, action="api_token.create", target=f"api_token:{token.id}",
           after={"name": token.name, "user": user.email, "role": user.role})
    return token


def revoke_token(session: Session, actor: str, token_id: int, *, owner_id: int | None = None) -> ApiToken:
    """Revoke a token (only one of `owner_id`'s, when given)."""
    check_id(token_id, "token")
    owner = get_user(session, owner_id) if owner_id is not None else None
    existing = session.get(ApiToken, token_id)
    was_revoked = existing is not None and existing.revoked_at is not None
    try:
        row = store.revoke_token(session, token_id, owner=owner)
    except store.UserError as exc:
        raise NotFound(str(exc)) from None
    record(session, actor=actor, action="api_token.revoke", target=f"api_token:{row.id}",
           before={"name": row.name, "revoked": was_revoked}, after={"name": row.name, "revoked": True})
    return row
