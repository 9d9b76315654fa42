"""Admin: sends held for review because they exceed what their account can send, and what to
do with each: release it within the limits, move it to MailChimp, or cancel it."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from lamplight_mail import audit
from lamplight_mail.delivery import limits, outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import Send, SendStatus
from lamplight_mail.reporting.flagged import describe, flagged_sends, mailchimp_csv
from lamplight_mail.web import message_view
from lamplight_mail.web.access import admin_required
from lamplight_mail.web.forms.flag_threshold import ThresholdForm
from lamplight_mail.web.pagination import paginate
from lamplight_mail.web.views.sends import confirm_cancel, withdraw
from lamplight_mail.wording import plural, send_name

bp = Blueprint("admin_sends", __name__, url_prefix="/admin")


def _render_flagged(form: ThresholdForm) -> str:
    page = paginate(flagged_sends())
    return render_template(
        "admin_sends/flagged.html",
        page=page,
        rows=describe(page.items),
        messages={send.id: message_view.of_send(send) for send in page.items},
        form=form,
        threshold=limits.flag_threshold(),
    )


@bp.get("/flagged")
@admin_required
def flagged() -> str:
    return _render_flagged(ThresholdForm(threshold=limits.flag_threshold()))


@bp.post("/flagged/threshold")
@admin_required
def threshold() -> BaseResponse | str:
    form = ThresholdForm()
    if not form.validate_on_submit():
        return _render_flagged(form)
    before, after = limits.flag_threshold(), form.threshold.data
    limits.set_flag_threshold(after)
    audit.record(
        "settings.flag_threshold",
        "setting",
        None,
        f"Flag threshold set to {after:,} recipients" if after else "Flag threshold removed",
        {"from": before, "to": after},
    )
    db.session.commit()
    flash(
        f"Sends with more than {after:,} recipients will now wait for an admin."
        if after
        else "Sends are now flagged only when they exceed what their account can send.",
        "success",
    )
    return redirect(url_for("admin_sends.flagged"))


def _send_or_404(send_id: int) -> Send:
    return db.session.get(Send, send_id) or abort(404)


@bp.route("/sends/<int:send_id>/release", methods=["GET", "POST"])
@admin_required
def release(send_id: int) -> BaseResponse | str:
    send = _send_or_404(send_id)
    if send.status != SendStatus.FLAGGED:
        flash(
            f"{send_name(send.subject)} is {send.status.value}: only a flagged send can be "
            "released."
        )
        return redirect(url_for("admin_sends.flagged"))
    if request.method == "POST":
        try:
            outbox.release(send, current_user)
        except outbox.SendStateError as error:  # released or cancelled by someone else meanwhile
            flash(str(error), "error")
        else:
            flash(
                f"Released {send_name(send.subject)}: "
                f"{plural(send.recipient_count, 'message')} queued to go out."
            )
        return redirect(url_for("admin_sends.flagged"))
    (row,) = describe([send])
    return render_template(
        "admin_sends/release.html",
        row=row,
        message=message_view.of_send(send),
    )


@bp.route("/sends/<int:send_id>/cancel", methods=["GET", "POST"])
@admin_required
def cancel(send_id: int) -> BaseResponse | str:
    send = _send_or_404(send_id)
    if send.status in (SendStatus.DONE, SendStatus.CANCELLED):
        flash(f"{send_name(send.subject)} is already {send.status.value}.")
        return redirect(url_for("admin_sends.flagged"))
    if request.method == "POST":
        withdraw(send)
        return redirect(url_for("admin_sends.flagged"))
    return confirm_cancel(
        send, url_for("admin_sends.cancel", send_id=send.id), url_for("admin_sends.flagged")
    )


@bp.get("/sends/<int:send_id>/export")
@admin_required
def confirm_export(send_id: int) -> str:
    return render_template("admin_sends/export.html", send=_send_or_404(send_id))


@bp.get("/sends/<int:send_id>/export.csv")
@admin_required
def export(send_id: int) -> Response:
    send = _send_or_404(send_id)
    body = mailchimp_csv(send)
    # Recipients' addresses leave the system here: the trail says who took them and when.
    audit.record(
        "send.exported",
        "send",
        send.id,
        f"Exported {plural(send.recipient_count, 'recipient')} of send {send.id} "
        f"({send_name(send.subject)}) for MailChimp",
        {"recipients": send.recipient_count},
    )
    db.session.commit()
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="send-{send.id}-mailchimp.csv"',
            "Cache-Control": "no-store",
        },
    )
