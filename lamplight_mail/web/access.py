"""Who may see what: Flask-Login wiring and the role guard used by every admin view."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, request
from flask_login import current_user, login_required

from lamplight_mail.extensions import db, login_manager
from lamplight_mail.models import User

F = TypeVar("F", bound=Callable[..., Any])


def init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
    app.before_request(require_login)


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


def admin_required(view: F) -> F:
    """Logged-in admins only: anonymous users go to /login, operators get 403."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


# Pages anyone may open; every other endpoint requires a logged-in user, so a new route cannot
# be published by accident.
PUBLIC_ENDPOINTS = frozenset(
    {
        "auth.login",
        "auth.setup",
        "auth.index",
        "static",
        "ops.healthz",
        "ops.metrics",
        "unsubscribe.confirm",
        "unsubscribe.unsubscribe",
    }
)


def require_login() -> Any:
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None
