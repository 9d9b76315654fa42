"""What every template can use: the navigation, dates in UK form, the home page per role."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app, request, url_for
from flask_login import current_user
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from lamplight_mail import audit, org_time
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, User
from lamplight_mail.wording import plural, send_name

log = logging.getLogger(__name__)


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
    NavLink("oauth.registrations", "OAuth apps", True),
    NavLink("admin_sends.flagged", "Flagged sends", True),
    NavLink("suppressions.index", "Do-not-email list", True),
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


def accounts_needing_attention() -> list[EmailAccount]:
    """For the banner on every admin page: live accounts that are paused or failing."""
    if not (current_user.is_authenticated and current_user.is_admin):
        return []
    query = (
        select(EmailAccount)
        .where(
            EmailAccount.archived_at.is_(None),
            or_(EmailAccount.paused_at.is_not(None), EmailAccount.last_outcome_ok.is_(False)),
        )
        .order_by(EmailAccount.id)
    )
    try:
        accounts = db.session.scalars(query).all()
    except SQLAlchemyError as error:
        # An error page drawn while the database is away still renders, without the banner.
        log.warning("the account banner could not be read: %s", error)
        db.session.rollback()
        return []
    return [account for account in accounts if account.needs_attention]


def format_datetime(value: datetime | None) -> str:
    """Stored times are naive UTC; shown on the organisation's clocks with the zone named
    ("14 Jul 2026 09:30 BST"), so nobody guesses the zone."""
    return org_time.shown(value)


def format_clock(value: datetime | None, now: datetime | None = None) -> str:
    """A moment near `now` (both naive UTC) as the organisation's clock reads it: "09:30 BST",
    with the day when it is not today ("15 Jul 09:30 BST")."""
    if value is None:
        return ""
    local = org_time.local(value)
    today = org_time.local(now).date() if now is not None else None
    day = "" if local.date() == today else local.strftime("%d %b ")
    return day + local.strftime("%H:%M %Z")


def format_number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def format_filesize(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 2**20:.1f} MB"


def init_app(app: Flask) -> None:
    app.jinja_env.filters["datetime"] = format_datetime
    app.jinja_env.filters["number"] = format_number
    app.jinja_env.filters["localtime"] = org_time.shown
    app.jinja_env.filters["clock"] = format_clock
    app.jinja_env.filters["filesize"] = format_filesize
    app.jinja_env.filters["plural"] = plural
    app.jinja_env.filters["send_name"] = send_name
    from lamplight_mail.web.views.help import mailchimp_help_url

    app.context_processor(
        lambda: {
            "navigation": navigation,
            "accounts_needing_attention": accounts_needing_attention,
            "mailchimp_url": mailchimp_help_url,
            "audit_label": audit.field_label,
            "audit_value": audit.value_text,
            "zone_name": org_time.zone_name,
        }
    )
    register_error_pages(app)


def register_error_pages(app: Flask) -> None:
    from flask import render_template

    def render_error(error):
        code = getattr(error, "code", 500)
        return render_template("error.html", code=code, error=error), code

    def render_button_only(error: MethodNotAllowed):
        """An action's address opened as a page (a new tab, a bookmark): say where its button
        is rather than report an error."""
        back = page_of_action() if request.method == "GET" else None
        headers = {"Allow": ", ".join(error.valid_methods or [])}
        return render_template("error.html", code=405, error=error, back=back), 405, headers

    for code in (400, 403, 404, 413, 500):
        app.register_error_handler(code, render_error)
    app.register_error_handler(405, render_button_only)


def page_of_action() -> str | None:
    """The page whose button posts to the requested address, when it can be told."""
    try:
        endpoint, args = current_app.url_map.bind_to_environ(request.environ).match(method="POST")
    except HTTPException:
        return None
    if not current_user.is_authenticated:
        return None
    account_id = args.get("account_id")
    if account_id is not None and current_user.is_admin:
        from lamplight_mail.accounts import resolution
        from lamplight_mail.web.account_pages import account_page

        account = resolution.live_account(account_id)
        return account_page(account) if account is not None else None
    if endpoint.startswith(("accounts.my_", "oauth.my_")):
        return url_for("accounts.my_email")
    if endpoint.startswith("admin_sends."):
        return url_for("admin_sends.flagged")
    if "send_id" in args:
        return url_for("sends.detail", send_id=args["send_id"])
    return None
