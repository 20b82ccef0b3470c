"""Settings: defaults, URL normalisation, and errors that name the offending variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_defaults_use_embedded_services(tmp_path: Path) -> None:
    from core.runtime import service_urls

    settings = load_settings({"data_dir": tmp_path}, env_file=None)
    urls = service_urls(settings)
    assert settings.sandbox_mode
    assert urls.redis_url == f"unix://{tmp_path.resolve()}/redis.sock"
    assert urls.broker_url.startswith("redis+socket://")
    assert urls.database_url == f"sqlite:///{tmp_path.resolve()}/leadbridge.db"


def test_postgres_url_gets_the_psycopg_driver() -> None:
    settings = load_settings({"database_url": "postgres://u@db:5432/leadbridge"}, env_file=None)
    assert settings.database_url == "postgresql+psycopg://u@db:5432/leadbridge"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LEADBRIDGE_PORT": "eighty"}, "LEADBRIDGE_PORT"),
        ({"LEADBRIDGE_PORT": "70000"}, "LEADBRIDGE_PORT"),
        ({"DATABASE_URL": "mysql://root@localhost/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"LEADBRIDGE_LOG_LEVEL": "LOUD"}, "LEADBRIDGE_LOG_LEVEL"),
        ({"HUBSPOT_BASE_URL": "api.hubapi.com"}, "HUBSPOT_BASE_URL"),
        ({"SALESFORCE_USERNAME": "ops@example.com"}, "SALESFORCE_PASSWORD"),
        # Development only: plain http to this machine, never a remote host or https
        ({"SALESFORCE_SANDBOX_URL": "https://127.0.0.1:8765"}, "SALESFORCE_SANDBOX_URL"),
        ({"SALESFORCE_SANDBOX_URL": "http://crm.example.com:8765"}, "SALESFORCE_SANDBOX_URL"),
        ({"SALESFORCE_SANDBOX_URL": "127.0.0.1:8765"}, "SALESFORCE_SANDBOX_URL"),
        ({"LEADBRIDGE_TASK_SOFT_TIME_LIMIT": "400"}, "LEADBRIDGE_TASK_SOFT_TIME_LIMIT"),
    ],
)
def test_invalid_setting_is_named(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert named in str(info.value)


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "x" * 5)
    monkeypatch.setenv("LEADBRIDGE_PORT", "nope")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert "xxxxx" not in str(info.value)


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("LEADBRIDGE_PORT=9123\nREDIS_URL=redis://cache:6379/2\n")
    settings = load_settings(env_file=str(env_file))
    assert settings.port == 9123
    assert settings.redis_url == "redis://cache:6379/2"


def test_generated_secret_key_is_kept(tmp_path: Path) -> None:
    first = load_settings({"data_dir": tmp_path}, env_file=None).resolved_secret_key()
    second = load_settings({"data_dir": tmp_path}, env_file=None).resolved_secret_key()
    assert first == second and len(first) >= 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_cli_reports_bad_setting_without_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LEADBRIDGE_PORT": "abc", "LEADBRIDGE_ENV_FILE": "",
           "LEADBRIDGE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "cli.main", "doctor"], env=env, capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "LEADBRIDGE_PORT" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_env_example_lists_every_setting() -> None:
    from core.settings import Settings, env_name

    text = (REPO / ".env.example").read_text()
    missing = [env_name(field) for field in Settings.model_fields if env_name(field) not in text]
    assert missing == []
    load_settings(env_file=str(REPO / ".env.example"))  # and its values are valid


def test_salesforce_sandbox_url_accepts_a_local_http_base_url() -> None:
    settings = load_settings({"salesforce_sandbox_url": "http://localhost:8765/"}, env_file=None)
    assert settings.salesforce_sandbox_url == "http://localhost:8765"
    assert settings.sandbox_mode  # routing alone configures no org
