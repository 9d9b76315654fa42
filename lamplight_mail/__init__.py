"""Lamplight Mail: the app factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from lamplight_mail.config import load_config
from lamplight_mail.web import register_blueprints

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=os.environ.get("LAMPLIGHT_MAIL_INSTANCE") or str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)

    register_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_cli(app)
    register_template_helpers(app)
    return app


def register_logging(app: Flask) -> None:
    from lamplight_mail.ops import structured_logs

    structured_logs.init_app(app)


def register_extensions(app: Flask) -> None:
    from lamplight_mail import models  # noqa: F401  (tables must be known to Flask-Migrate)
    from lamplight_mail.extensions import (
        begin_form_writes_immediately,
        csrf,
        db,
        init_redis,
        migrate,
    )
    from lamplight_mail.web.access import init_login

    db.init_app(app)
    # Batch mode lets Alembic alter tables on SQLite, which has no ALTER COLUMN.
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    # Before the login check, whose user lookup would otherwise begin a deferred transaction.
    app.before_request(begin_form_writes_immediately)
    init_login(app)
    init_redis(app)


def register_cli(app: Flask) -> None:
    from lamplight_mail import cli

    cli.init_app(app)


def register_template_helpers(app: Flask) -> None:
    from lamplight_mail.web import template_globals

    template_globals.init_app(app)
