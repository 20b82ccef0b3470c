"""Users (admins only) and each user's own API tokens (shown once)."""

from __future__ import annotations

from flask import render_template, request
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin import pages
from bridge.admin.pages import bp, db
from services import users as ops
from storage.users import ROLES, list_tokens, list_users


def _me() -> security.Principal:
    principal = security.current()
    assert principal is not None  # the blueprint refused anonymous requests already
    return principal


@bp.get("/users")
@security.admin_only
def users() -> ResponseReturnValue:
    """All users and the form to add one."""
    with db() as session:
        rows = list_users(session)
    return render_template("admin/users.html", users=rows, roles=ROLES)


@bp.post("/users")
@security.admin_only
def add_user() -> ResponseReturnValue:
    """Add a user with a password the admin hands over out of band."""
    with db(write=True) as session:
        user = ops.add_user(session, security.actor(), email=request.form.get("email", ""),
                            password=request.form.get("password", ""), role=request.form.get("role", "viewer"))
        email = user.email
    return pages.done(f"User {email} added.", "admin.users")


@bp.post("/users/<int:user_id>/role")
@security.admin_only
def change_role(user_id: int) -> ResponseReturnValue:
    """Change a user's role."""
    with db(write=True) as session:
        user = ops.change_role(session, security.actor(), user_id, request.form.get("role", ""),
                               acting_user_id=_me().user_id)
        message = f"{user.email} is now {user.role}."
    return pages.done(message, "admin.users")


@bp.post("/users/<int:user_id>/delete")
@security.admin_only
def remove_user(user_id: int) -> ResponseReturnValue:
    """Remove a user."""
    with db(write=True) as session:
        ops.remove_user(session, security.actor(), user_id, acting_user_id=_me().user_id)
    return pages.done("User removed.", "admin.users")


@bp.get("/tokens")
def tokens() -> ResponseReturnValue:
    """The current user's API tokens."""
    me = _me()
    with db() as session:
        user = ops.get_user(session, me.user_id)
        rows = list_tokens(session, user)
    return render_template("admin/tokens.html", tokens=rows, new_token=None)


@bp.post("/tokens")
def create_token() -> ResponseReturnValue:
    """Make an API token for the current user (it acts with their role) and show it once."""
    me = _me()
    with db(write=True) as session:
        token = ops.create_token(session, security.actor(), me.user_id, request.form.get("name", ""))
        rows = list_tokens(session, ops.get_user(session, me.user_id))
    return render_template("admin/tokens.html", tokens=rows, new_token=token), 201


@bp.post("/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int) -> ResponseReturnValue:
    """Revoke one of the current user's tokens."""
    me = _me()
    with db(write=True) as session:
        ops.revoke_token(session, security.actor(), token_id, owner_id=me.user_id)
    return pages.done("Token revoked.", "admin.tokens")
