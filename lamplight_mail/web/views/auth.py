"""Log in and out, and the first-run setup that creates the first admin."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from markupsafe import Markup
from werkzeug.wrappers import Response

from lamplight_mail import users
from lamplight_mail.extensions import db
from lamplight_mail.models import Role, User
from lamplight_mail.web import throttle
from lamplight_mail.web.forms.auth import LoginForm, SetupForm
from lamplight_mail.web.forms.validators import normalise_email
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
        user = _attempt_login(form)
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or url_for("auth.index"))
    return render_template("auth/login.html", form=form)


def _attempt_login(form: LoginForm) -> User | None:
    """The user to log in, or None with the reason on the form. Failures are counted by
    account and by client address; past either limit nothing is checked until it expires."""
    email = normalise_email(form.email.data)
    address = request.remote_addr or "unknown"
    refusal = _locked_out(email, address)
    if refusal is not None:
        form.password.errors.append(refusal)
        return None
    user = users.authenticate(email, form.password.data)
    if user is None:
        throttle.count(throttle.LOGIN_BY_ACCOUNT, email)
        throttle.count(throttle.LOGIN_BY_ADDRESS, address)
        # One message for both cases, so the form does not reveal which addresses have users.
        form.password.errors.append("That email address and password do not match.")
        return None
    if not user.is_active:
        # Said only to whoever knows the password.
        form.password.errors.append(
            "This user has been deactivated. Ask an admin if you need to log in again."
        )
        return None
    throttle.clear(throttle.LOGIN_BY_ACCOUNT, email)
    return user


def _locked_out(email: str, address: str) -> str | None:
    """Why nothing is checked, or None. The network's lockout is said first: a new password
    from an admin lifts only the account's, so its advice would not help there."""
    wait = throttle.retry_after(throttle.LOGIN_BY_ADDRESS, address)
    if wait is not None:
        return f"Too many failed log-ins from your network. Try again in {throttle.in_words(wait)}."
    wait = throttle.retry_after(throttle.LOGIN_BY_ACCOUNT, email)
    if wait is not None:
        return (
            "Too many failed log-ins for this account. Try again in "
            f"{throttle.in_words(wait)}, or ask an admin to set a new password."
        )
    return None


@bp.post("/logout")
@login_required
def logout() -> Response:
    # Ends this user's every session, not only this cookie: a copy taken from this browser
    # (or a session left open elsewhere) stops working too.
    current_user.end_sessions()
    db.session.commit()
    logout_user()
    flash("You have logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> Response | str:
    if request.method == "POST":
        users.lock_for_first_run()  # concurrent posts: one admin, the others get the 404
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
