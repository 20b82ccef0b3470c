"""Log-in and log-out pages."""

from __future__ import annotations

from flask import redirect, render_template, request
from flask.typing import ResponseReturnValue

from bridge import security
from bridge.admin import pages
from bridge.admin.pages import bp, safe_next


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Show the log-in form; check the password (rate-limited) and start a session."""
    if request.method == "GET":
        if security.session_principal() is not None:
            return redirect(safe_next(request.args.get("next")))
        return render_template("admin/login.html", next=request.args.get("next", ""), email="")
    email = (request.form.get("email") or "").strip()
    password = request.form.get("password") or ""
    user = security.attempt_login(email, password)
    if user is None:
        return render_template("admin/login.html", next=request.form.get("next", ""), email=email,
                               error="E-mail or password is wrong."), 401
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session."""
    security.logout()
    return pages.done("You are logged out.", "admin.login")
