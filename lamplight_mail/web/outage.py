"""While the database cannot be reached, every page answers 503 with a page that needs no
database, and the app recovers by itself once it is back.

The ordinary error page cannot be used: its layout shows the navigation and the logged-in
user, and loading the user queries the database, so an outage used to end in Werkzeug's bare
500. The outage page is drawn from a template that uses neither. Nothing else is needed to
recover: the pool pings a connection before use (pool_pre_ping) and replaces dead ones."""

from __future__ import annotations

import logging

from flask import Flask, current_app, g
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from lamplight_mail.extensions import db, login_manager

log = logging.getLogger(__name__)

# Raised when the server is down, refuses connections, the file cannot be opened, or the pool
# waited in vain; not for errors in a query itself.
UNREACHABLE = (OperationalError, InterfaceError, PoolTimeout)
RETRY_AFTER_SECONDS = 30


def database_unavailable(error: Exception) -> tuple[str, int, dict[str, str]]:
    # The exception's class and the driver's first line: no query parameters, no URL.
    reason = str(getattr(error, "orig", None) or type(error).__name__).splitlines()[0]
    log.warning("database unavailable, answering 503: %s", reason[:200])
    try:
        db.session.rollback()
    except SQLAlchemyError:
        db.session.remove()  # the connection is broken: drop the session with it
    # Anonymous for the rest of this request: Flask-Login's template context and any later
    # look at current_user would otherwise try the database again.
    g._login_user = login_manager.anonymous_user()
    # Drawn straight from the Jinja environment, past the context processors for that reason.
    page = current_app.jinja_env.get_template("unavailable.html").render()
    return page, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}


def init_app(app: Flask) -> None:
    for error in UNREACHABLE:
        app.register_error_handler(error, database_unavailable)
