"""Structured logs: one JSON object per line in production, key=value lines in development,
and no secret in either, whatever a log call passes."""

from __future__ import annotations

import json
import logging

import pytest

from lamplight_mail import create_app

SECRET = "hunter2-app-password"


def _log_everything_careless(app) -> None:
    logger = logging.getLogger("lamplight_mail.test")
    with app.test_request_context("/admin/email/3/test"):
        logger.info(
            "account %s saved with password=%s and token: %s",
            3,
            SECRET,
            SECRET,
            extra={
                "account_id": 3,
                "smtp_password": SECRET,
                "Authorization": f"Bearer {SECRET}",
                "details": {"host": "smtp.office365.com", "password": SECRET},
                "answer": f"client sent AUTH PLAIN {SECRET}",
            },
        )
        try:
            raise RuntimeError(f"connect failed for user x password={SECRET}")
        except RuntimeError:
            logger.exception("test connection failed")


@pytest.fixture
def production_app(app_config, make_app):
    return make_app({**app_config, "ENV_MODE": "production"})


def test_production_logs_one_json_object_per_line_without_secrets(production_app, capsys):
    _log_everything_careless(production_app)
    lines = capsys.readouterr().err.strip().splitlines()
    events = [json.loads(line) for line in lines]  # every line is one whole JSON object
    saved, failed = (event for event in events if event["logger"] == "lamplight_mail.test")

    assert SECRET not in "\n".join(lines)
    assert saved["event"] == "account 3 saved with password=[redacted] and token: [redacted]"
    assert saved["level"] == "info"
    assert saved["account_id"] == 3
    assert saved["smtp_password"] == "[redacted]"
    assert saved["Authorization"] == "[redacted]"
    assert saved["details"] == {"host": "smtp.office365.com", "password": "[redacted]"}
    assert saved["answer"] == "client sent AUTH PLAIN [redacted]"
    assert saved["path"] == "/admin/email/3/test"
    assert failed["level"] == "error"
    assert "RuntimeError: connect failed for user x password=[redacted]" in failed["exception"]


def test_development_logs_readable_lines_without_secrets(app, capsys):
    _log_everything_careless(app)
    output = capsys.readouterr().err
    assert SECRET not in output
    saved = next(line for line in output.splitlines() if "saved with" in line)
    assert " INFO lamplight_mail.test: account 3 saved with password=[redacted]" in saved
    assert "account_id=3" in saved and "smtp_password=[redacted]" in saved


def test_creating_apps_again_keeps_one_handler(app_config):
    for _ in range(3):
        create_app(app_config)
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "lamplight_mail"]
    assert len(ours) == 1
