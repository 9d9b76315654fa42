"""Log in and out, and the first-run setup that creates the first admin."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from markupsafe import Markup
from werkzeug.wrappers import Response

from lamplight_mail import users
from lamplight_mail.extensions import db
from lamplight_mail.models import Role
from lamplight_mail.web.forms.auth import LoginForm, SetupForm
from lamplight_mail.web.template_globals import home_endpoint

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: an open redirect would let a link send admins anywhere."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.get("/")
def index() -> Response:
    if not users.any_user_exists():
        return redirect(url_for("auth.setup"))
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return redirect(url_for(home_endpoint(current_user)))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    if not users.any_user_exists():
        return redirect(url_for("auth.setup"))
    form = LoginForm()
    if form.validate_on_submit():
        user = users.find_by_email(form.email.data)
        if user is not None and user.check_password(form.password.data) and user.is_active:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or url_for("auth.index"))
        # One message for both cases, so the form does not reveal which addresses have accounts.
        form.password.errors.append("That email address and password do not match.")
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout() -> Response:
    logout_user()
    flash("You have logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> Response | str:
    if users.any_user_exists():
        abort(404)
    form = SetupForm()
    if form.validate_on_submit():
        user = users.create_user(form.email.data, form.name.data, Role.ADMIN, form.password.data)
        db.session.commit()
        login_user(user)
        settings = url_for("accounts.communication_settings")
        flash(
            Markup(
                'Welcome. Next, <a href="{}">set up the email accounts</a> your organisation '
                "sends through."
            ).format(settings),
            "success",
        )
        return redirect(url_for("auth.index"))
    return render_template("auth/setup.html", form=form)
