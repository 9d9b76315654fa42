"""Admin: the people who use Lamplight Mail, operators and admins."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from lamplight_mail import users
from lamplight_mail.extensions import db
from lamplight_mail.models import User
from lamplight_mail.web.access import admin_required
from lamplight_mail.web.forms.auth import MIN_PASSWORD_LENGTH, UserForm
from lamplight_mail.web.pagination import paginate

bp = Blueprint("users", __name__, url_prefix="/admin/users")


@bp.get("")
@admin_required
def index() -> str:
    page = paginate(select(User).order_by(User.name, User.id))
    return render_template("users/index.html", page=page)


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
            flash(f"Saved {user.name}.", "success")
            return redirect(url_for("users.index"))
    return render_template("users/form.html", form=form, user=user)
