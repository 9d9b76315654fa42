"""Help links: Lamplight's own help pages when LAMPLIGHT_MAIL_LAMPLIGHT_URL names the instance,
else a short page of this app saying the same."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, url_for

from lamplight_mail.providers import MAILCHIMP_HELP_PATH

bp = Blueprint("help", __name__, url_prefix="/help")


def mailchimp_help_url() -> str:
    """Where "Linking with MailChimp" is read: Lamplight's help, or this app's short page."""
    lamplight = current_app.config.get("LAMPLIGHT_URL")
    if lamplight:
        return lamplight + MAILCHIMP_HELP_PATH
    return url_for("help.mailchimp")


@bp.get("/mailchimp")
def mailchimp() -> str:
    return render_template("help/mailchimp.html")
