"""The web side: blueprints by area, their forms, and helpers for templates and pages."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from lamplight_mail.config import PRODUCTION
    from lamplight_mail.web.views import (
        admin_sends,
        audit,
        auth,
        compose,
        dashboard,
        dev,
        email_accounts,
        help,
        log,
        oauth,
        ops,
        sends,
        suppressions,
        unsubscribe,
        users,
    )

    for module in (
        auth,
        users,
        email_accounts,
        oauth,
        compose,
        sends,
        dashboard,
        log,
        audit,
        ops,
        admin_sends,
        help,
        suppressions,
        unsubscribe,
    ):
        app.register_blueprint(module.bp)
    if app.config["ENV_MODE"] != PRODUCTION:
        app.register_blueprint(dev.bp)
