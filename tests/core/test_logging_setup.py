"""The log formatters and the mask filter: extra fields kept, secrets and e-mails never written."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest

from core.logging_setup import (
    MASK,
    RedactFilter,
    configure_logging,
    email_token,
    mask_text,
    resolve_format,
)
from tests.pii import BOB, DANA


@contextlib.contextmanager
def logging_into_buffer(level: str, fmt: str) -> Iterator[io.StringIO]:
    """Logging configured as a process would be, into a buffer; the root's handlers and level restored."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    try:
        configure_logging(level, fmt, stream=buffer, capture_warnings=False)
        yield buffer
    finally:
        for handler in [h for h in root.handlers if h not in saved_handlers]:
            root.removeHandler(handler)
        root.setLevel(saved_level)


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """Logging configured as a process would be (INFO, JSON), into a buffer; restored after."""
    with logging_into_buffer("INFO", "json") as buffer:
        yield buffer, logging.getLogger("tests.logging")


def records(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_json_line_keeps_every_extra_field(captured: tuple[io.StringIO, logging.Logger]) -> None:
    buffer, log = captured
    log.warning("enrich.failed", extra={"crm": "hubspot", "error": "TransientConnectorError", "attempt": 2,
                                         "counts": {"won": 3}})
    (line,) = records(buffer)
    assert line["message"] == "enrich.failed" and line["level"] == "WARNING" and line["logger"] == "tests.logging"
    assert line["crm"] == "hubspot" and line["error"] == "TransientConnectorError" and line["attempt"] == 2
    assert line["counts"] == {"won": 3}
    assert "timestamp" in line and isinstance(line["pid"], int)


def test_exception_type_and_traceback_kept_with_secrets_masked(captured: tuple[io.StringIO, logging.Logger]) -> None:
    buffer, log = captured
    try:
        raise ValueError(f"no contact for {DANA} (token=s3cr3t-value)")
    except ValueError:
        log.exception("alert.failed", extra={"rule": 7})
    (line,) = records(buffer)
    assert line["exc_type"] == "ValueError" and line["rule"] == 7
    assert "Traceback (most recent call last)" in str(line["traceback"])
    text = buffer.getvalue()
    assert DANA not in text and "s3cr3t-value" not in text
    assert email_token(DANA) in text


def test_secret_keys_and_emails_masked_in_extras_and_message(captured: tuple[io.StringIO, logging.Logger]) -> None:
    buffer, log = captured
    log.info("login by %s with Authorization: Bearer abc.def.ghi", BOB, extra={
        "api_key": "k-123", "webhook_url": "https://hooks.slack.com/services/T1/B2/xyz", "password": "hunter2",
        "session_id": "00D5e000!AQ", "client_secret": "shh", "email": DANA,
        "nested": {"Authorization": "Bearer zzz", "people": [DANA, "kept"]},
        "url": "postgresql://app:pgpass@db:5432/x",
    })
    (line,) = records(buffer)
    for key in ("api_key", "webhook_url", "password", "session_id", "client_secret"):
        assert line[key] == MASK, key
    assert line["nested"] == {"Authorization": MASK, "people": [email_token(DANA), "kept"]}
    assert line["email"] == email_token(DANA)
    assert line["url"] == f"postgresql://app:{MASK}@db:5432/x"
    text = buffer.getvalue()
    for leaked in (BOB, DANA, "k-123", "xyz", "hunter2", "00D5e000", "shh", "abc.def.ghi", "zzz", "pgpass"):
        assert leaked not in text, leaked
    assert line["message"] == f"login by {email_token(BOB)} with Authorization: Bearer {MASK}"


def test_text_format_is_one_line_with_key_values() -> None:
    with logging_into_buffer("INFO", "text") as buffer:
        logging.getLogger("bridge.webhooks").info(
            "webhook.%s.rejected", "hubspot", extra={"reason": "bad_signature", "source": "crm one", "token": "t"})
    (line,) = buffer.getvalue().splitlines()
    assert "INFO" in line and "bridge.webhooks webhook.hubspot.rejected" in line
    assert line.endswith(f'reason=bad_signature source="crm one" token={MASK}')


def test_celery_per_task_lines_are_debug(captured: tuple[io.StringIO, logging.Logger]) -> None:
    buffer, _ = captured
    logging.getLogger("celery.app.trace").info("Task %s[%s] succeeded in %ss: None", "tasks.x", "1", 0.01)
    logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", "tasks.x", "1")
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "heartbeat", "tasks.system.heartbeat")
    logging.getLogger("celery.app.trace").error("Task %s[%s] raised unexpected: %r", "tasks.x", "2", "boom")
    logging.getLogger("celery.beat").info("beat: Starting...")
    assert [line["message"] for line in records(buffer)] == [
        "Task tasks.x[2] raised unexpected: 'boom'", "beat: Starting..."]


def test_per_task_lines_show_at_debug_as_debug() -> None:
    try:
        with logging_into_buffer("DEBUG", "json") as buffer:
            logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", "tasks.x", "1")
    finally:
        # The loggers' levels back to what INFO sets.
        with logging_into_buffer("INFO", "json"):
            pass
    (line,) = records(buffer)
    assert line["level"] == "DEBUG" and line["message"] == "Task tasks.x[1] received"


def test_mask_text_leaves_ordinary_text_alone() -> None:
    plain = "ingest.slow_batch 1.20s, 2000 rows, 37 leads; webhook.events.rejected reason=stale_timestamp"
    assert mask_text(plain) == plain
    assert mask_text("written to https://hooks.slack.com/services/TABC/BDEF/secretpart") == (
        f"written to https://hooks.slack.com/services/{MASK}")


def test_sql_parameters_in_database_errors_are_masked(captured: tuple[io.StringIO, logging.Logger]) -> None:
    from sqlalchemy import create_engine, text

    buffer, log = captured
    engine = create_engine("sqlite://")
    try:
        with engine.connect() as connection:
            connection.execute(text("INSERT INTO missing (name, city) VALUES (:name, :city)"),
                               {"name": "Dana Lopez", "city": "Springfield"})
    except Exception:
        log.exception("http.unhandled_exception")
    finally:
        engine.dispose()
    (line,) = records(buffer)
    assert line["exc_type"] == "OperationalError" and f"[parameters: {MASK}]" in str(line["traceback"])
    assert "Dana Lopez" not in buffer.getvalue() and "Springfield" not in buffer.getvalue()


def test_auto_format_is_text_on_a_terminal_and_json_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"


def test_filter_survives_a_record_whose_arguments_do_not_fit() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items for %s", ("many",), None)
    assert RedactFilter().filter(record) is True
    assert record.args is None and "%d items" in str(record.msg)
