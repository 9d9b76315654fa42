"""Structured logs: one line per event, JSON in production, never a secret.

Code logs events the standard way, with the facts as extra fields:
    logger.info("message sent", extra={"message_id": 12, "account_id": 3, "code": 250})
In production each event is one JSON object per line (what log shippers expect); in development
a readable line with the fields as key=value. A filter on the handler redacts any field whose
name looks like a secret, and password-like pairs, bearer tokens and SMTP AUTH payloads inside
the text, so a careless log call cannot leak an SMTP password or a key.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from flask import Flask, has_request_context, request

from lamplight_mail.config import PRODUCTION

HANDLER_NAME = "lamplight_mail"
# Libraries that narrate routine steps at INFO: aiosmtpd (the development catcher and the test
# servers) logs every SMTP command, Alembic every plugin it loads.
QUIET_LOGGERS = ("mail.log", "alembic.runtime.plugins")
REDACTED = "[redacted]"

_SECRET_WORDS = r"pass(?:word|wd|phrase)?|secret|token|api[_-]?key|credential|fernet|cookie"
SECRET_FIELD = re.compile(rf"(?:{_SECRET_WORDS}|authori[sz]ation)", re.IGNORECASE)
_SECRET_PAIR = re.compile(
    rf"""(?P<key>[\w-]*(?:{_SECRET_WORDS})[\w-]*)(?P<sep>["']?\s*[:=]\s*["']?)[^\s"',;&]+""",
    re.IGNORECASE,
)
_CREDENTIAL = re.compile(
    r"\b(?P<key>Bearer|Basic|AUTH\s+(?:PLAIN|LOGIN|XOAUTH2))\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE
)
# A recipient's unsubscribe link (/u/<token>): the token alone unsubscribes them.
_UNSUBSCRIBE_LINK = re.compile(r"(?P<key>/u/)[A-Za-z0-9_-]+")
# Attributes every LogRecord has; anything else came in through `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def redact_text(text: str) -> str:
    text = _SECRET_PAIR.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", text)
    text = _UNSUBSCRIBE_LINK.sub(lambda m: f"{m['key']}{REDACTED}", text)
    return _CREDENTIAL.sub(lambda m: f"{m['key']} {REDACTED}", text)


def _redact_value(name: str, value: Any) -> Any:
    if SECRET_FIELD.search(name):
        return REDACTED
    if isinstance(value, dict):
        return {key: _redact_value(str(key), item) for key, item in value.items()}
    if isinstance(value, str):
        return redact_text(value)
    return value


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}


class RedactSecrets(logging.Filter):
    """Rewrites each record before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep the text
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        for key, value in _extra_fields(record).items():
            setattr(record, key, _redact_value(key, value))
        if has_request_context() and not hasattr(record, "path"):
            record.path = redact_text(request.path)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_extra_fields(record),
        }
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in _extra_fields(record).items())
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        line = f"{line} {fields}" if fields else line
        if record.exc_info:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        return line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when the event happens (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def init_app(app: Flask) -> None:
    """Send every logger's events (Flask's, RQ's, ours) through one redacting handler."""
    handler = _StderrHandler()
    handler.set_name(HANDLER_NAME)
    production = app.config["ENV_MODE"] == PRODUCTION
    handler.setFormatter(JsonFormatter() if production else TextFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    # Replace our handler (create_app may run more than once in a process), keep anyone else's.
    for existing in list(root.handlers):
        if existing.get_name() == HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
