"""Admin: the do-not-email list. Add one address, import a CSV, search, remove; every change
is in the audit trail."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from lamplight_mail import audit, suppressions
from lamplight_mail.extensions import db
from lamplight_mail.models import Suppression
from lamplight_mail.recipients import UnreadableFile, read_csv
from lamplight_mail.web.access import admin_required
from lamplight_mail.web.forms.suppressions import AddSuppressionForm, ImportSuppressionsForm
from lamplight_mail.web.pagination import paginate

bp = Blueprint("suppressions", __name__, url_prefix="/admin/suppressions")
PER_PAGE = 50


def _render(add_form: AddSuppressionForm, import_form: ImportSuppressionsForm) -> str:
    search = (request.args.get("q") or "").strip().lower()[:254]
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Suppression.email.like(f"%{escaped}%", escape="\\"))
    return render_template(
        "suppressions/index.html",
        page=paginate(query, per_page=PER_PAGE),
        search=search,
        add_form=add_form,
        import_form=import_form,
    )


@bp.get("")
@admin_required
def index() -> str:
    return _render(AddSuppressionForm(), ImportSuppressionsForm())


@bp.post("/add")
@admin_required
def add() -> Response | str:
    form = AddSuppressionForm()
    if not form.validate_on_submit():
        return _render(form, ImportSuppressionsForm())
    address = form.email.data
    if suppressions.add([address], "admin", current_user):
        audit.record(
            "suppression.added",
            "suppression",
            None,
            f"Put {address.lower()} on the do-not-email list",
            {"email": address.lower()},
        )
        flash(f"{address} will not be sent to.", "success")
    else:
        flash(f"{address} is on the list already.")
    db.session.commit()
    return redirect(url_for("suppressions.index"))


@bp.post("/import")
@admin_required
def import_csv() -> Response | str:
    form = ImportSuppressionsForm()
    if not form.validate_on_submit():
        return _render(AddSuppressionForm(), form)
    upload = form.file.data
    name = (upload.filename or "the file")[-100:]
    try:
        listing = read_csv(upload.read(), name)
    except UnreadableFile as error:
        form.file.errors.append(str(error))
        return _render(AddSuppressionForm(), form)
    added = suppressions.add([r.email for r in listing.recipients], "import", current_user)
    audit.record(
        "suppression.imported",
        "suppression",
        None,
        f"Imported {len(added):,} addresses to the do-not-email list from {name}",
        {"added": len(added), "already_listed": len(listing.recipients) - len(added)},
    )
    db.session.commit()
    skipped = (
        f"; {len(listing.problems):,} rows were not valid addresses" if listing.problems else ""
    )
    flash(
        f"Added {len(added):,} addresses from {name} "
        f"({len(listing.recipients) - len(added):,} were on the list already{skipped}).",
        "success",
    )
    return redirect(url_for("suppressions.index"))


@bp.route("/<int:suppression_id>/remove", methods=["GET", "POST"])
@admin_required
def remove(suppression_id: int) -> Response | str:
    entry = db.session.get(Suppression, suppression_id) or abort(404)
    if request.method == "GET":
        return render_template("suppressions/remove.html", entry=entry)
    audit.record(
        "suppression.removed",
        "suppression",
        entry.id,
        f"Took {entry.email} off the do-not-email list",
        {"email": entry.email, "source": entry.source},
    )
    db.session.delete(entry)
    db.session.commit()
    flash(f"{entry.email} can be sent to again.", "success")
    return redirect(url_for("suppressions.index"))
