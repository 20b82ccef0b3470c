"""One logging configuration for every leadbridge process: structured, masked, quiet about routine work.

Every record goes to one stderr handler. On a terminal it is one readable line with the `extra=` fields
as key=value; otherwise one JSON object per line (timestamp, level, logger, message, every extra field,
and the exception type and traceback when there is one). Before either, `RedactFilter` masks secrets
(values of keys such as token, password, authorization, webhook_url; credentials in URLs and headers)
and e-mail addresses, in extra values, messages and tracebacks. Celery's per-task lines ("Task ...
received", "succeeded in") and beat's "Sending due task" are demoted to DEBUG.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import IO, Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["auto", "json", "text"]

# Attributes every LogRecord has (or that formatters add): anything else on a record came from `extra=`.
STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName", "color_message",
}

MASK = "***"
# Keys whose values are never logged (matched case-insensitively, anywhere in the key).
SECRET_KEYS = ("secret", "token", "password", "passwd", "authorization", "session_id", "sessionid", "api_key",
               "apikey", "webhook_url", "cookie", "credential", "private_key", "signature")
_SECRET_KEY = re.compile("|".join(re.escape(k) for k in SECRET_KEYS), re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# Patterns of secrets inside free text (messages, exception messages, tracebacks).
_TEXT_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/\s@]*:)[^@\s/]+@", re.IGNORECASE), r"\1" + MASK + "@"),
    # Authorization: Bearer xyz / Basic xyz
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE), r"\1 " + MASK),
    # token=abc, "password": "abc", api_key: abc ...
    (re.compile(r"((?:" + "|".join(SECRET_KEYS) + r""")[A-Za-z_\-]*["']?\s*[=:]\s*["']?(?:Bearer\s+|Basic\s+)?)[^\s"',;&}]+""",
                re.IGNORECASE), r"\1" + MASK),
    # Slack incoming-webhook paths (hooks.slack.com/services/T.../B.../secret)
    (re.compile(r"/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"), "/services/" + MASK),
    # HubSpot private-app tokens
    (re.compile(r"\bpat-[a-z0-9]+-[A-Za-z0-9\-]+"), "pat-" + MASK),
    # SQLAlchemy quotes a failed statement's parameters in its errors: webhook payload values, names, e-mails
    (re.compile(r"\[parameters: [^\n]*\]"), "[parameters: " + MASK + "]"),
)


def email_token(address: str) -> str:
    """A stable stand-in for an e-mail address in logs: records about one person can be matched, not read."""
    return "email:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()[:10]


def mask_text(text: str) -> str:
    """`text` with secrets masked and e-mail addresses replaced by their hash prefix."""
    for pattern, replacement in _TEXT_SECRETS:
        text = pattern.sub(replacement, text)
    return _EMAIL.sub(lambda m: email_token(m.group(0)), text)


def mask_value(key: str, value: Any, depth: int = 0) -> Any:
    """A log field's value with secrets and e-mails masked (a secret key's whole value becomes ***)."""
    if value is None:
        return None
    if _SECRET_KEY.search(key):
        return MASK
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return mask_text(value)
    if depth >= 4:
        return mask_text(str(value))
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(key, v, depth + 1) for v in value]
    if isinstance(value, datetime):
        return value
    return mask_text(str(value))


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a call passed with `extra=` (everything on the record that logging did not put there)."""
    return {k: v for k, v in record.__dict__.items() if k not in STANDARD_ATTRS and not k.startswith("_")}


class RedactFilter(logging.Filter):
    """Masks secrets and e-mail addresses in a record's message, arguments and extra fields (in place)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.msg, Mapping):
                record.msg = mask_value("msg", record.msg)
            else:
                record.msg = mask_text(record.getMessage())
                record.args = None
        except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format: keep it as it is
            record.msg, record.args = mask_text(str(record.msg)), None
        for key, value in extra_fields(record).items():
            setattr(record, key, mask_value(key, value))
        return True


class DemoteFilter(logging.Filter):
    """Turns a logger's INFO records (those `matches` accepts) into DEBUG ones: routine, per-task lines."""

    def __init__(self, matches: Callable[[logging.LogRecord], bool] = lambda _record: True) -> None:
        super().__init__()
        self.matches = matches

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and self.matches(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class JsonLogFormatter(JsonFormatter):  # type: ignore[misc]
    """One JSON object per record: timestamp, level, logger, message, extra fields, exception type and traceback."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "traceback"},
            timestamp=True,
            reserved_attrs=sorted(STANDARD_ATTRS),
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = None  # first in the line; filled in by the base class
        super().add_fields(log_data, record, message_dict)
        log_data["pid"] = record.process
        if record.exc_info and record.exc_info[0] is not None:
            log_data["exc_type"] = record.exc_info[0].__name__

    def formatException(self, ei: Any) -> str:
        return mask_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return mask_text(super().formatStack(stack_info))


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, bool | int | float) else str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class TextLogFormatter(logging.Formatter):
    """A readable line per record: time, level, logger, message, then the extra fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        head, sep, tail = line.partition("\n")  # a traceback, when there is one, stays below the line
        extras = extra_fields(record)
        if extras:
            head += " " + " ".join(f"{k}={_text_value(v)}" for k, v in extras.items())
        return head + sep + tail

    def formatException(self, ei: Any) -> str:
        return mask_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return mask_text(super().formatStack(stack_info))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created).strftime(datefmt or "%H:%M:%S")


# Celery's per-task lines: routine at thousands a minute, so DEBUG. Their warnings and errors stay.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")
QUIET_LOGGERS = {"alembic": logging.WARNING}  # Alembic narrates every plugin it loads at INFO
SERVER_LOGGERS = ("gunicorn.error", "celery")  # their INFO lines narrate start-up and shutdown


def resolve_format(log_format: LogFormat, stream: IO[str]) -> Literal["json", "text"]:
    """`auto` is text on a terminal and JSON everywhere else (files, pipes, containers)."""
    if log_format != "auto":
        return log_format
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(level: str | int = "INFO", log_format: LogFormat = "auto", stream: IO[str] | None = None, *,
                      quiet_servers: bool = False, capture_warnings: bool = True) -> str:
    """Send every record through one masked, structured stderr handler; return the format chosen ("json"/"text").

    `quiet_servers` keeps gunicorn's and Celery's own INFO narration out (their warnings and errors stay);
    `capture_warnings` sends Python warnings through the same handler. Safe to call again (the previous
    leadbridge handler is replaced; handlers others added are left alone).
    """
    stream = stream or sys.stderr
    chosen = resolve_format(log_format, stream)
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    handler = logging.StreamHandler(stream)
    handler.set_name("leadbridge")
    handler.setLevel(numeric)
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonLogFormatter() if chosen == "json" else TextLogFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "leadbridge"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, floor in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, numeric))
    for name in SERVER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet_servers and numeric == logging.INFO else logging.NOTSET)
    if capture_warnings:
        logging.captureWarnings(True)  # a warning is one record too, not lines of raw text in a JSON stream
    _demote(PER_TASK_LOGGERS, numeric)
    _demote(["celery.beat"], None, lambda record: str(record.msg).startswith("Scheduler: Sending due task"))
    return chosen


def _demote(names: Iterable[str], level: int | None,
            matches: Callable[[logging.LogRecord], bool] = lambda _record: True) -> None:
    for name in names:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, DemoteFilter)]:
            logger.removeFilter(old)
        logger.addFilter(DemoteFilter(matches))
        if level is not None:
            # Below DEBUG verbosity the records are not even made (Celery checks isEnabledFor(INFO) once).
            logger.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
