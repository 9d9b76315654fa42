"""Admin: the people who use Lamplight Mail, operators and admins."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from lamplight_mail import users
from lamplight_mail.accounts import resolution
from lamplight_mail.extensions import db
from lamplight_mail.models import User
from lamplight_mail.web import throttle
from lamplight_mail.web.access import admin_required
from lamplight_mail.web.forms.auth import MIN_PASSWORD_LENGTH, UserForm
from lamplight_mail.web.pagination import paginate

bp = Blueprint("users", __name__, url_prefix="/admin/users")


@bp.get("")
@admin_required
def index() -> str:
    page = paginate(select(User).order_by(User.name, User.id))
    shared = resolution.system_account()
    # What compose would send each user's mail through: their own account, or the single one.
    sending = {user.id: resolution.sending_account(user.account, shared) for user in page.items}
    return render_template("users/index.html", page=page, sending=sending)


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new() -> Response | str:
    form = UserForm()
    # A new user has no password to keep: the hint says it is needed.
    form.password.description = f"Required: at least {MIN_PASSWORD_LENGTH} characters."
    if form.validate_on_submit():
        if not form.password.data:
            form.password.errors.append("A new user needs a password.")
        else:
            try:
                users.create_user(
                    form.email.data, form.name.data, form.role.data, form.password.data
                )
            except users.DuplicateEmail as error:
                form.email.errors.append(str(error))
            else:
                db.session.commit()
                flash(f"Added {form.name.data}.", "success")
                return redirect(url_for("users.index"))
    return render_template("users/form.html", form=form, user=None)


@bp.route("/<int:user_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(user_id: int) -> Response | str:
    user = db.session.get(User, user_id) or abort(404)
    form = UserForm(obj=user)
    if form.validate_on_submit():
        try:
            users.update_user(
                user, form.email.data, form.name.data, form.role.data, form.password.data
            )
        except users.DuplicateEmail as error:
            form.email.errors.append(str(error))
        except users.LastAdmin as error:
            form.role.errors.append(str(error))
        else:
            db.session.commit()
            if form.password.data:
                # What the log-in page tells a locked-out user to ask for: the failures
                # counted against the old password no longer hold the account.
                throttle.clear(throttle.LOGIN_BY_ACCOUNT, user.email)
            if user.id == current_user.id:
                # A new password ended the admin's own sessions too; this one carries on.
                login_user(user)
            flash(f"Saved {user.name}.", "success")
            return redirect(url_for("users.index"))
    return render_template("users/form.html", form=form, user=user)


@bp.route("/<int:user_id>/deactivate", methods=["GET", "POST"])
@admin_required
def deactivate(user_id: int) -> Response | str:
    """GET asks for confirmation; POST stops the user logging in and ends their sessions."""
    user = db.session.get(User, user_id) or abort(404)
    if request.method == "POST":
        try:
            users.deactivate_user(user, current_user)
        except (users.CannotDeactivateSelf, users.LastAdmin) as error:
            flash(str(error), "error")
        else:
            db.session.commit()
            flash(f"Deactivated {user.name}: they are logged out and cannot log in.", "success")
            return redirect(url_for("users.index"))
    return render_template("users/deactivate.html", user=user)


@bp.post("/<int:user_id>/reactivate")
@admin_required
def reactivate(user_id: int) -> Response:
    user = db.session.get(User, user_id) or abort(404)
    users.reactivate_user(user, current_user)
    db.session.commit()
    flash(f"Reactivated {user.name}: they can log in again with their password.", "success")
    return redirect(url_for("users.index"))
