"""What every template can use: the navigation, dates in UK form, the home page per role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app, url_for
from flask_login import current_user

from lamplight_mail.models import User


@dataclass(frozen=True)
class NavLink:
    endpoint: str
    label: str
    admin_only: bool


# A link shows only once its blueprint is registered, so areas can land one at a time.
NAVIGATION = (
    NavLink("dashboard.index", "Dashboard", True),
    NavLink("compose.compose", "Compose", False),
    NavLink("sends.index", "Sends", False),
    NavLink("accounts.my_email", "My email account", False),
    NavLink("accounts.communication_settings", "Communication Settings", True),
    NavLink("admin_sends.flagged", "Flagged sends", True),
    NavLink("log.index", "Delivery log", True),
    NavLink("users.index", "Users", True),
    NavLink("audit.index", "Audit", True),
)

# The first of these that exists is where a user lands after logging in.
HOME_BY_ROLE = {
    True: ("dashboard.index", "accounts.communication_settings", "users.index"),
    False: ("compose.compose", "accounts.my_email", "auth.logout"),
}


def home_endpoint(user: User) -> str:
    for endpoint in HOME_BY_ROLE[user.is_admin]:
        if endpoint in current_app.view_functions:
            return endpoint
    return "auth.login"


def navigation() -> list[tuple[str, str]]:
    if not current_user.is_authenticated:
        return []
    return [
        (url_for(link.endpoint), link.label)
        for link in NAVIGATION
        if link.endpoint in current_app.view_functions
        and (current_user.is_admin or not link.admin_only)
    ]


def format_datetime(value: datetime | None) -> str:
    """Stored times are naive UTC; shown as such, labelled, so nobody guesses the zone."""
    if value is None:
        return ""
    return value.strftime("%d %b %Y %H:%M UTC")


def format_number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def init_app(app: Flask) -> None:
    app.jinja_env.filters["datetime"] = format_datetime
    app.jinja_env.filters["number"] = format_number
    app.context_processor(lambda: {"navigation": navigation})
    register_error_pages(app)


def register_error_pages(app: Flask) -> None:
    from flask import render_template

    def render_error(error):
        code = getattr(error, "code", 500)
        return render_template("error.html", code=code, error=error), code

    for code in (400, 403, 404, 405, 413, 500):
        app.register_error_handler(code, render_error)
