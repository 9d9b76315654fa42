"""Lamplight Mail: the app factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from lamplight_mail.config import load_config
from lamplight_mail.web import register_blueprints

# templates/, static/ and migrations/ sit inside the package (links to the checkout's top-level
# folders, copied in by `pip install .`), so an installed copy needs no checkout.
PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


def _default_instance_path() -> Path:
    """instance/ of the checkout when run from one; of the working directory when installed."""
    in_checkout = (PROJECT_ROOT / "pyproject.toml").is_file()
    return (PROJECT_ROOT if in_checkout else Path.cwd()) / "instance"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=os.environ.get("LAMPLIGHT_MAIL_INSTANCE") or str(_default_instance_path()),
        template_folder=str(PACKAGE_DIR / "templates"),
        static_folder=str(PACKAGE_DIR / "static"),
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)

    register_logging(app)
    register_extensions(app)
    register_security(app)
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
        size_connection_pool,
    )
    from lamplight_mail.web.access import init_login

    size_connection_pool(app.config)
    db.init_app(app)
    # Batch mode lets Alembic alter tables on SQLite, which has no ALTER COLUMN.
    migrate.init_app(app, db, directory=str(PACKAGE_DIR / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    # Before the login check, whose user lookup would otherwise begin a deferred transaction.
    app.before_request(begin_form_writes_immediately)
    init_login(app)
    init_redis(app)


def register_security(app: Flask) -> None:
    """What every request goes through, before the blueprints' rules are added."""
    from lamplight_mail.web import outage, security_headers, url_params

    url_params.init_app(app)
    security_headers.init_app(app)
    outage.init_app(app)
    hops = app.config["PROXY_HOPS"]
    if hops:
        # Only as many forwarded hops as there are proxies: a client cannot forge its address
        # (and so its log-in throttle) by sending X-Forwarded-For itself.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def register_cli(app: Flask) -> None:
    from lamplight_mail import cli

    cli.init_app(app)


def register_template_helpers(app: Flask) -> None:
    from lamplight_mail.web import template_globals

    template_globals.init_app(app)
