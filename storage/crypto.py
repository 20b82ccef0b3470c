"""Encryption at rest for secrets kept in the database (webhook secrets, Slack webhook URLs, CRM tokens).

Values are Fernet tokens (AES-128-CBC + HMAC-SHA256, from the `cryptography` package) prefixed with
`enc1:` so a reader can tell them from values written before encryption existed, which are read as
plaintext until they are next written.

The key comes from LEADBRIDGE_ENCRYPTION_KEY (one or more comma-separated Fernet keys: the first
encrypts, all decrypt, so a key can be rotated). Without it, a key is generated once into the data
directory (`encryption_key`, mode 0600), the way the session secret key is.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

ENCRYPTION_KEY_ENV = "LEADBRIDGE_ENCRYPTION_KEY"
KEY_FILE = "encryption_key"
PREFIX = "enc1:"


class CryptoError(Exception):
    """A value cannot be decrypted (wrong key, or tampered with), or the key itself is unusable."""


def generate_key() -> str:
    """A new random Fernet key (urlsafe base64 of 32 bytes), e.g. for LEADBRIDGE_ENCRYPTION_KEY."""
    return Fernet.generate_key().decode()


def parse_keys(value: str) -> list[bytes]:
    """Split a comma-separated key list and check each key is a Fernet key."""
    keys = [part.strip().encode() for part in value.split(",") if part.strip()]
    if not keys:
        raise CryptoError(f"{ENCRYPTION_KEY_ENV} is empty")
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise CryptoError(
                f"{ENCRYPTION_KEY_ENV}: key {index} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None
    return keys


def data_dir_key(data_dir: Path) -> bytes:
    """The key kept in the data directory, generated (mode 0600) on first use."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process generated it first; use theirs
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate_key())
    return parse_keys(path.read_text())[0]


def configured_keys() -> list[bytes]:
    """The keys for this process: LEADBRIDGE_ENCRYPTION_KEY, else the data directory's generated key."""
    from core.settings import load_settings

    settings = load_settings()
    # Settings gains an `encryption_key` field; until then the variable is read straight from the environment.
    configured = getattr(settings, "encryption_key", None)
    value = configured.get_secret_value() if configured is not None else os.environ.get(ENCRYPTION_KEY_ENV, "")
    if value.strip():
        return parse_keys(value)
    return [data_dir_key(settings.data_dir)]


class Cipher:
    """Encrypts and decrypts short secrets with one primary key and any number of older ones."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise CryptoError("no encryption key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        """The stored form of `plaintext`."""
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The plaintext of a stored value (values without the prefix predate encryption and are returned as-is)."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise CryptoError(
                f"a stored secret cannot be decrypted: {ENCRYPTION_KEY_ENV} (or the data directory's "
                f"{KEY_FILE}) is not the key it was encrypted with"
            ) from None

    def rotate(self, stored: str) -> str:
        """Re-encrypt a stored value under the primary key (after a key rotation)."""
        return self.encrypt(self.decrypt(stored))


_lock = threading.Lock()
_cipher: Cipher | None = None
_cipher_source: tuple[str | None, str | None, str | None] | None = None


def cipher() -> Cipher:
    """This process's cipher, built once from the configuration (rebuilt if the key settings change)."""
    global _cipher, _cipher_source
    source = (os.environ.get(ENCRYPTION_KEY_ENV), os.environ.get("LEADBRIDGE_DATA_DIR"),
              os.environ.get("LEADBRIDGE_ENV_FILE"))
    if _cipher is None or source != _cipher_source:
        with _lock:
            if _cipher is None or source != _cipher_source:
                _cipher = Cipher(configured_keys())
                _cipher_source = source
    return _cipher


def encrypt(plaintext: str) -> str:
    """Encrypt a secret for storage."""
    return cipher().encrypt(plaintext)


def decrypt(stored: str) -> str:
    """Decrypt a stored secret (plaintext from before encryption passes through)."""
    return cipher().decrypt(stored)


def is_encrypted(stored: str | None) -> bool:
    """True when a stored value is in the encrypted form."""
    return bool(stored) and stored.startswith(PREFIX)  # type: ignore[union-attr]


def mask(plaintext: str | None, visible: int = 4) -> str:
    """A secret as it may be shown after creation: only its last few characters."""
    if not plaintext:
        return ""
    if len(plaintext) <= visible * 4:
        return "•" * 8
    return "•" * 8 + plaintext[-visible:]
