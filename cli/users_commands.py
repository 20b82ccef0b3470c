"""`leadbridge users ...`: admin UI users. `users add` creates the first admin (there is no default password)."""

from __future__ import annotations

import getpass
import os
import sys

import click
from rich.console import Console
from rich.table import Table

from cli.context import fail, settings_or_exit
from core.runtime import service_urls
from core.settings import Settings
from storage.db import Database
from storage.users import MIN_PASSWORD, ROLES, list_users


def cli_actor() -> str:
    """How the audit log names a change made from this shell."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = str(os.getuid())
    return f"cli:{name}"


def add_user(settings: Settings, *, email: str, role: str, password: str, actor: str | None = None) -> tuple[int, str]:
    """Create a user in the configured database (audited); returns (id, normalised e-mail)."""
    from services import users as ops

    database = Database(service_urls(settings).database_url)
    try:
        with database.session(write=True) as session:
            user = ops.add_user(session, actor or cli_actor(), email=email, password=password, role=role)
            return user.id, user.email
    finally:
        database.dispose()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; the newline a pipe or heredoc adds is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    first = click.prompt("Password", hide_input=True)
    second = click.prompt("Repeat the password", hide_input=True)
    if first != second:
        fail("the passwords do not match")
    return first


@click.group()
def users() -> None:
    """Admin UI users (passwords are stored as argon2id hashes)."""


@users.command("add")
@click.option("--email", required=True, help="The user's e-mail, used to log in.")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True,
              help="admin changes configuration; viewer only reads.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def add(email: str, role: str, password_stdin: bool) -> None:
    """Create a user; prompts for the password (at least 12 characters) unless --password-stdin."""
    from services import OperationError

    settings = settings_or_exit()
    password = _read_password(password_stdin)
    if len(password) < MIN_PASSWORD:
        fail(f"the password must be at least {MIN_PASSWORD} characters")
    try:
        user_id, address = add_user(settings, email=email, role=role, password=password)
    except OperationError as exc:
        fail(exc.message)
    except Exception as exc:  # noqa: BLE001 - e.g. the database is unreachable or not migrated
        fail(f"{type(exc).__name__}: {exc}. Is the database migrated (`leadbridge db upgrade`)?")
    click.echo(f"user {address} ({role}) created with id {user_id}; log in at {settings.base_url()}/admin/login")


@users.command("list")
def list_command() -> None:
    """List users and their roles."""
    settings = settings_or_exit()
    database = Database(service_urls(settings).database_url)
    try:
        with database.session() as session:
            rows = [(u.id, u.email, u.role, u.last_login_at) for u in list_users(session)]
    except Exception as exc:  # noqa: BLE001 - reported without a traceback
        fail(f"{type(exc).__name__}: {exc}. Is the database migrated (`leadbridge db upgrade`)?")
    finally:
        database.dispose()
    table = Table(title="users")
    for column in ("id", "e-mail", "role", "last log-in"):
        table.add_column(column)
    for user_id, email, role, last in rows:
        table.add_row(str(user_id), email, role, f"{last:%Y-%m-%d %H:%M}" if last else "never")
    Console().print(table)
