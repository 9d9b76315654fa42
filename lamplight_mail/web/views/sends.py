"""Sends: their progress, the message itself, and what happened to each recipient's message;
the sender (or an admin) may withdraw what has not gone yet, or start a scheduled send now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from lamplight_mail import suppressions
from lamplight_mail.delivery import outbox, scheduling
from lamplight_mail.extensions import db
from lamplight_mail.models import Attachment, Message, MessageStatus, Send, SendStatus, utcnow
from lamplight_mail.web import message_view
from lamplight_mail.web.pagination import paginate
from lamplight_mail.wording import plural, send_name

bp = Blueprint("sends", __name__, url_prefix="/sends")

# While work remains the progress page reloads itself (a meta refresh: no JavaScript needed).
REFRESH_SECONDS = 5
MESSAGES_PER_PAGE = 50
WITHDRAWABLE = (SendStatus.FLAGGED, SendStatus.SCHEDULED, SendStatus.QUEUED, SendStatus.SENDING)


@bp.get("")
def index() -> str:
    """The user's own sends, newest first; admins see everyone's."""
    query = select(Send).order_by(Send.created_at.desc(), Send.id.desc())
    if not current_user.is_admin:
        query = query.where(Send.user_id == current_user.id)
    page = paginate(query)
    counts = outbox.counts_by_send([send.id for send in page.items])
    return render_template("sends/index.html", page=page, counts=counts)


def _own_send_or_404(send_id: int) -> Send:
    send = db.session.get(Send, send_id)
    if send is None or not (current_user.is_admin or send.user_id == current_user.id):
        abort(404)  # someone else's send is, to this user, no send at all
    return send


@dataclass(frozen=True)
class Waiting:
    """Why a send's deferred messages wait and when the next is due: said beside the counts,
    so nobody has to find it in the table of recipients."""

    count: int
    reason: str | None
    next_due: datetime


def _waiting(send: Send, count: int) -> Waiting | None:
    if not count:
        return None
    row = db.session.execute(
        select(Message.last_response, Message.due_at)
        .where(Message.send_id == send.id, Message.status == MessageStatus.DEFERRED)
        .order_by(Message.due_at)
        .limit(1)
    ).first()
    return Waiting(count, row.last_response, row.due_at) if row else None


@bp.get("/<int:send_id>")
def detail(send_id: int) -> str:
    send = _own_send_or_404(send_id)
    counts = outbox.counts_by_send([send.id])[send.id]
    status = request.args.get("status")
    shown = MessageStatus(status) if status in set(MessageStatus) else None
    query = select(Message).where(Message.send_id == send.id).order_by(Message.id)
    if shown is not None:
        query = query.where(Message.status == shown)
    return render_template(
        "sends/detail.html",
        send=send,
        message=message_view.of_send(send),
        counts=counts,
        waiting=_waiting(send, counts[MessageStatus.DEFERRED]),
        page=paginate(query, per_page=MESSAGES_PER_PAGE),
        shown=shown,
        refresh=REFRESH_SECONDS if send.status in (SendStatus.QUEUED, SendStatus.SENDING) else None,
        now=utcnow(),
        withdrawable=send.status in WITHDRAWABLE,
    )


@bp.route("/<int:send_id>/cancel", methods=["GET", "POST"])
def cancel(send_id: int) -> BaseResponse | str:
    """Withdraw what has not gone yet, after a confirmation saying how many messages."""
    send = _own_send_or_404(send_id)
    if send.status not in WITHDRAWABLE:
        flash(f"This send is {send.status.value}: there is nothing left to cancel.")
        return redirect(url_for("sends.detail", send_id=send.id))
    if request.method == "POST":
        withdraw(send)
        return redirect(url_for("sends.detail", send_id=send.id))
    return confirm_cancel(
        send, url_for("sends.cancel", send_id=send.id), url_for("sends.detail", send_id=send.id)
    )


def withdraw(send: Send) -> None:
    """Cancel what has not gone yet, saying how many (or why not) on the next page."""
    try:
        cancelled = outbox.cancel(send, current_user)
    except outbox.SendStateError as error:
        flash(str(error), "error")
    else:
        flash(
            f"Cancelled {send_name(send.subject)}: {plural(cancelled, 'message')} will not be sent."
        )


def confirm_cancel(send: Send, action: str, back: str) -> str:
    """The confirmation before withdrawing a send: how many messages will not be sent, and the
    message itself (the sender's and the admins' cancel pages alike)."""
    return render_template(
        "sends/cancel.html",
        send=send,
        waiting=outbox.open_count(send.id),
        message=message_view.of_send(send),
        action=action,
        back=back,
    )


@bp.route("/<int:send_id>/send-now", methods=["GET", "POST"])
def send_now(send_id: int) -> BaseResponse | str:
    """Start a scheduled send before its time (judged against the limits now), after a
    confirmation saying how many messages would go."""
    send = _own_send_or_404(send_id)
    back = url_for("sends.detail", send_id=send.id)
    if request.method == "GET":
        return _confirm_send_now(send, back)
    try:
        status = scheduling.start(send, current_user)
    except outbox.SendStateError as error:
        flash(str(error), "error")
    else:
        if status == SendStatus.FLAGGED:
            flash(f"Your email is held for an admin to review: {send.flag_reason}", "warning")
        else:
            flash("Your email is on its way.", "success")
    return redirect(back)


def _confirm_send_now(send: Send, back: str) -> str:
    """What sending now would do, changing nothing: how many messages would go (less those to
    addresses put on the do-not-email list since), and whether the send would be held for an
    admin instead, as `scheduling.start` judges it. A send no longer scheduled says so."""
    left_out = going = 0
    held_because = None
    if send.status == SendStatus.SCHEDULED:
        left_out = len(suppressions.waiting_on_list(send.id))
        going = outbox.open_count(send.id) - left_out
        held_because = None if send.released_at else outbox.flag_reason(send.account, going)
    return render_template(
        "sends/send_now.html",
        send=send,
        going=going,
        left_out=left_out,
        held_because=held_because,
        message=message_view.of_send(send),
        back=back,
    )


@bp.get("/<int:send_id>/attachments/<int:index>")
def attachment(send_id: int, index: int) -> Response:
    """One of the send's attachments, as a download (never shown inline)."""
    send = _own_send_or_404(send_id)
    files = send.attachments
    if not 0 <= index < len(files):
        abort(404)
    attached: Attachment = files[index]
    response = Response(attached.data, mimetype="application/octet-stream")
    response.headers.set("Content-Disposition", "attachment", filename=attached.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
