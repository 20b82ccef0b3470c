"""storage.crypto, storage.users, storage.audit and the `leadbridge users` command."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select

from cli.users_commands import users
from storage import crypto
from storage.audit import REDACTED, list_entries, record, scrub
from storage.db import Database
from storage.models import AuditEntry, Source, User
from storage.sources import create_source, encrypt_plaintext_secrets, rotate_secret, valid_secrets
from storage.users import UserError, authenticate, create_token, create_user, set_role, token_user

# --- crypto -----------------------------------------------------------------------------------------


def test_cipher_round_trip_and_key_rotation() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    stored = crypto.Cipher([old]).encrypt("s3cret")
    assert stored.startswith("enc1:") and "s3cret" not in stored
    rotated = crypto.Cipher([new, old])  # new key first: it encrypts, both decrypt
    assert rotated.decrypt(stored) == "s3cret"
    again = rotated.rotate(stored)
    assert crypto.Cipher([new]).decrypt(again) == "s3cret"
    with pytest.raises(crypto.CryptoError, match="not the key"):
        crypto.Cipher([Fernet.generate_key()]).decrypt(stored)
    assert rotated.decrypt("legacy-plaintext") == "legacy-plaintext"  # written before encryption existed


def test_generated_key_lives_in_the_data_dir_with_mode_0600(tmp_path: Path) -> None:
    key = crypto.data_dir_key(tmp_path / "data")
    path = tmp_path / "data" / crypto.KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert crypto.data_dir_key(tmp_path / "data") == key  # generated once, then reused
    Fernet(key)


def test_bad_configured_keys_are_named() -> None:
    with pytest.raises(crypto.CryptoError, match="LEADBRIDGE_ENCRYPTION_KEY: key 2"):
        crypto.parse_keys(Fernet.generate_key().decode() + ",not-a-key")
    assert crypto.mask("abcdefghijklmnopqrstuvwxyz") == "••••••••wxyz"
    assert crypto.mask("short") == "••••••••"


def test_sources_keep_secrets_encrypted_and_verify_with_plaintext(clean_db: Database) -> None:
    with clean_db.session() as session:
        view = create_source(session, kind="hubspot", name="enc")
        rotated = rotate_secret(session, "enc", overlap=timedelta(hours=1))
        source = session.scalars(select(Source).where(Source.name == "enc")).one()
        assert source.secret.startswith("enc1:") and source.previous_secret.startswith("enc1:")
        assert valid_secrets(source) == [rotated.secret, view.secret]
        legacy = Source(name="legacy", kind="events", slug="legacy-slug", secret="whsec_" + "A" * 40)
        session.add(legacy)
        session.flush()
        assert valid_secrets(legacy) == ["whsec_" + "A" * 40]
        assert encrypt_plaintext_secrets(session) == 1
        assert legacy.secret.startswith("enc1:") and valid_secrets(legacy) == ["whsec_" + "A" * 40]


# --- users and tokens -------------------------------------------------------------------------------


def test_users_are_validated_and_passwords_checked(clean_db: Database) -> None:
    with clean_db.session() as session:
        user = create_user(session, email=" Ops@Example.COM ", password="long enough password", role="admin")
        assert user.email == "ops@example.com" and user.password_hash.startswith("$argon2id$")
        for kwargs, message in (
            ({"email": "ops@example.com", "password": "another long one", "role": "viewer"}, "already exists"),
            ({"email": "not-an-email", "password": "long enough password", "role": "viewer"}, "not an e-mail"),
            ({"email": "a@b.io", "password": "short", "role": "viewer"}, "at least 12"),
            ({"email": "a@b.io", "password": "long enough password", "role": "root"}, "role must be"),
        ):
            with pytest.raises(UserError, match=message):
                create_user(session, **kwargs)
        assert authenticate(session, "OPS@example.com", "long enough password") is user
        assert user.last_login_at is not None
        assert authenticate(session, "ops@example.com", "wrong password!!") is None
        assert authenticate(session, "nobody@example.com", "long enough password") is None
        with pytest.raises(UserError, match="last admin"):
            set_role(session, user, "viewer")


def test_tokens_are_hashed_and_revocable(clean_db: Database) -> None:
    with clean_db.session() as session:
        user = create_user(session, email="t@example.com", password="long enough password", role="viewer")
        new = create_token(session, user, "ci")
        assert new.token.startswith("lbt_") and len(new.token) > 40
        found = token_user(session, new.token)
        assert found is not None and found[1].id == user.id and found[0].last_used_at is not None
        assert token_user(session, new.token[:-1] + "x") is None
        assert token_user(session, "Bearer nonsense") is None
        found[0].revoked_at = found[0].created_at
        assert token_user(session, new.token) is None


# --- audit ------------------------------------------------------------------------------------------


def test_audit_scrubs_secrets_recursively(clean_db: Database) -> None:
    assert scrub({"secret": "x", "nested": {"api_token": "y", "ok": 1}, "list": [{"password": "z"}]}) == {
        "secret": REDACTED, "nested": {"api_token": REDACTED, "ok": 1}, "list": [{"password": REDACTED}]}
    with clean_db.session() as session:
        record(session, actor="a@x.io", action="source.create", target="source:1",
               after={"name": "n", "secret": "plaintext!"})
        record(session, actor="b@x.io", action="alert_rule.update", target="alert_rule:1",
               before={"threshold": 1}, after={"threshold": 2})
        entries, total = list_entries(session, action="source.")
        assert total == 1 and entries[0].after == {"name": "n", "secret": REDACTED}
        entries, total = list_entries(session, actor="b@x.io")
        assert total == 1 and entries[0].before == {"threshold": 1}
        assert list_entries(session, action="%")[1] == 0  # the prefix is matched literally


# --- `leadbridge users` -----------------------------------------------------------------------------


def test_users_add_command(service_env: dict[str, str], clean_db: Database) -> None:
    runner = CliRunner()
    ok = runner.invoke(users, ["add", "--email", "first@example.com", "--role", "admin", "--password-stdin"],
                       input="a long enough password\n", env=service_env)
    assert ok.exit_code == 0, ok.output
    assert "user first@example.com (admin) created" in ok.output
    short = runner.invoke(users, ["add", "--email", "x@example.com", "--password-stdin"], input="short\n",
                          env=service_env)
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    again = runner.invoke(users, ["add", "--email", "FIRST@example.com", "--password-stdin"],
                          input="a long enough password\n", env=service_env)
    assert again.exit_code == 2 and "already exists" in again.output
    mismatch = runner.invoke(users, ["add", "--email", "y@example.com"], input="password number 1\npassword number 2\n",
                             env=service_env)
    assert mismatch.exit_code == 2 and "do not match" in mismatch.output
    prompted = runner.invoke(users, ["add", "--email", "z@example.com"], input="prompted password\nprompted password\n",
                             env=service_env)
    assert prompted.exit_code == 0, prompted.output
    listed = runner.invoke(users, ["list"], env=service_env)
    assert "first@example.com" in listed.output and "z@example.com" in listed.output
    with clean_db.session() as session:
        user = session.scalars(select(User).where(User.email == "first@example.com")).one()
        assert authenticate(session, "first@example.com", "a long enough password") is not None
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "user.add")).first()
        assert entry is not None and entry.actor.startswith("cli:") and user.role == "admin"
