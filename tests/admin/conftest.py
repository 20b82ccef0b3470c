"""Admin UI and API fixtures: the app on the test database and Redis, users, log-ins and API tokens."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import delete

from core.keys import (
    BANDS_KEY,
    CHAMPION_KEY,
    FEATURE_SCHEMA_KEY,
    LOGIN_FAILURES_ACCOUNT_KEY,
    LOGIN_FAILURES_ADDRESS_KEY,
    SESSION_KEY,
    prefix_of,
)
from core.records import utcnow
from core.runtime import redis_client as make_redis_client
from storage.db import Database
from storage.models import (
    Account,
    AlertRule,
    ApiToken,
    AuditEntry,
    BandSet,
    FeatureSchemaVersion,
    FieldMapping,
    InboxEvent,
    Lead,
    LeadGroup,
    Measurement,
    ModelEvent,
    ModelVersion,
    OnlineSnapshot,
    OutboxItem,
    Outcome,
    OutcomeDefinition,
    Pilot,
    PrequentialScore,
    ScoreHistory,
    Source,
    User,
)
from storage.users import create_token, hash_password
from tests.processes import free_port
from tests.services import broker_urls

# One encryption key for this test session, shared with every subprocess through the environment, so a secret
# encrypted by one process is readable by another (and no key file is written into the working directory).
os.environ.setdefault("LEADBRIDGE_ENCRYPTION_KEY", Fernet.generate_key().decode())

REPO = Path(__file__).resolve().parents[2]
BROKER_DB = 7  # API tests publish to their own broker database, so no worker consumes what they inspect
PASSWORD = "correct horse battery staple"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "admin"
TABLES = (AuditEntry, ApiToken, User, AlertRule, FieldMapping, FeatureSchemaVersion, OutboxItem, ScoreHistory,
          Outcome, PrequentialScore, ModelEvent, OnlineSnapshot, InboxEvent, LeadGroup, Lead, Account, ModelVersion,
          Source, Measurement, Pilot, BandSet, OutcomeDefinition)


def wipe(db: Database) -> None:
    """Empty every table the admin touches."""
    with db.session() as session:
        for model in TABLES:
            session.execute(delete(model))


@pytest.fixture()
def clean_db(db: Database, redis_url: str) -> Iterator[Database]:
    """The test database, emptied before and after the test (and log-in counters and sessions forgotten)."""
    wipe(db)
    _forget_login_state(redis_url)
    yield db
    wipe(db)


def _forget_login_state(redis_url: str) -> None:
    client = make_redis_client(redis_url)
    # What promote/rollback and field changes told workers, and the band cut-offs cached from the emptied tables.
    client.delete(CHAMPION_KEY, FEATURE_SCHEMA_KEY, BANDS_KEY)
    for template in (LOGIN_FAILURES_ACCOUNT_KEY, LOGIN_FAILURES_ADDRESS_KEY, SESSION_KEY):
        for key in client.scan_iter(match=prefix_of(template) + "*"):
            client.delete(key)


@pytest.fixture()
def broker(redis_url: str) -> tuple[str, str]:
    """(Celery broker URL, redis-py URL) of this module's private broker database, flushed."""
    urls = broker_urls(redis_url, BROKER_DB)
    make_redis_client(urls[1]).flushdb()
    return urls


@pytest.fixture()
def admin_app(settings_overrides: dict[str, Any], broker: tuple[str, str], clean_db: Database):  # type: ignore[no-untyped-def]
    """The app wired to the test services, publishing tasks to the private broker database."""
    from bridge import create_app

    app = create_app({**settings_overrides, "broker_url": broker[0], "public_url": "http://localhost"})
    app.testing = True
    yield app
    app.extensions["leadbridge"].db.dispose()


@lru_cache(maxsize=1)
def password_hash() -> str:
    """PASSWORD's argon2id hash, computed once: each hash costs about 0.25 s on purpose."""
    return hash_password(PASSWORD)


@pytest.fixture()
def make_user(clean_db: Database) -> Callable[..., User]:
    """Create a user whose password is PASSWORD (a real argon2id hash, shared to save time)."""

    def make(role: str = "admin", email: str | None = None) -> User:
        with clean_db.session() as session:
            user = User(email=email or f"{role}-{uuid.uuid4().hex[:6]}@example.com", password_hash=password_hash(),
                        role=role, created_at=utcnow())
            session.add(user)
            session.flush()
            return user

    return make


@pytest.fixture()
def make_token(clean_db: Database, make_user: Callable[..., User]) -> Callable[[str], str]:
    """An API token (plaintext) for a new user of `role`."""

    def make(role: str = "admin") -> str:
        user = make_user(role)
        with clean_db.session() as session:
            return create_token(session, session.get(User, user.id), f"{role} test token").token  # type: ignore[arg-type]

    return make


def csrf_of(html: str) -> str:
    """The CSRF token in a rendered form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    """Log a test client in through the real form (CSRF token included); returns the POST response."""
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)})


def logged_in_client(app: Any, user: User) -> Any:
    """A test client of `app` logged in as `user` (kept on the client as `.user`)."""
    client = app.test_client()
    assert log_in(client, user.email).status_code == 302
    client.user = user
    return client


@pytest.fixture()
def admin_client(admin_app: Any, make_user: Callable[..., User]) -> Any:
    """A test client logged in as an admin."""
    return logged_in_client(admin_app, make_user("admin"))


@pytest.fixture()
def viewer_client(admin_app: Any, make_user: Callable[..., User]) -> Any:
    """A test client logged in as a viewer."""
    return logged_in_client(admin_app, make_user("viewer"))


def page_csrf(client: Any, path: str = "/admin/") -> str:
    """The CSRF token of a logged-in client's session, read from a page."""
    return csrf_of(client.get(path).text)


# --- a real web process and a real browser ---------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`leadbridge web` exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready within {timeout}s")


def serve_web(env: dict[str, str]) -> Iterator[str]:
    """`leadbridge web` (gunicorn, one process) on a free port with `env`; yields its base URL, stops it after."""
    port = free_port()
    env = {**env, "LEADBRIDGE_PORT": str(port), "LEADBRIDGE_WEB_WORKERS": "1", "LEADBRIDGE_WEB_THREADS": "4"}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "web"], env=env, cwd=REPO, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def web(service_env: dict[str, str], clean_db: Database) -> Iterator[str]:
    """`leadbridge web` (gunicorn) on a free port, on the test database, Redis and broker."""
    yield from serve_web(service_env)


@pytest.fixture()
def chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright (Playwright's own browser download does not work offline)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def browser_page(chromium: Any) -> Iterator[Any]:
    """A Chromium page at a desktop size."""
    context = chromium.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    """A full-page screenshot into test-output/admin/."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def browser_log_in(page: Any, base: str, path: str, user: User) -> None:
    """Open `path`, log in there as `user` (the test password), and wait to land back on it."""
    page.goto(base + path)
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**" + path)
