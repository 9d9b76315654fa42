"""Sends: their progress, and what happened to each recipient's message."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user
from sqlalchemy import select

from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus, Send, SendStatus, utcnow
from lamplight_mail.web.pagination import paginate

bp = Blueprint("sends", __name__, url_prefix="/sends")

# While work remains the progress page reloads itself (a meta refresh: no JavaScript needed).
REFRESH_SECONDS = 5
MESSAGES_PER_PAGE = 50


@bp.get("")
def index() -> str:
    """The user's own sends, newest first; admins see everyone's."""
    query = select(Send).order_by(Send.created_at.desc(), Send.id.desc())
    if not current_user.is_admin:
        query = query.where(Send.user_id == current_user.id)
    page = paginate(query)
    counts = outbox.counts_by_send([send.id for send in page.items])
    return render_template("sends/index.html", page=page, counts=counts)


@bp.get("/<int:send_id>")
def detail(send_id: int) -> str:
    send = db.session.get(Send, send_id)
    if send is None or not (current_user.is_admin or send.user_id == current_user.id):
        abort(404)  # someone else's send is, to this user, no send at all
    status = request.args.get("status")
    shown = MessageStatus(status) if status in set(MessageStatus) else None
    query = select(Message).where(Message.send_id == send.id).order_by(Message.id)
    if shown is not None:
        query = query.where(Message.status == shown)
    return render_template(
        "sends/detail.html",
        send=send,
        counts=outbox.counts_by_send([send.id])[send.id],
        page=paginate(query, per_page=MESSAGES_PER_PAGE),
        shown=shown,
        refresh=REFRESH_SECONDS if send.status in (SendStatus.QUEUED, SendStatus.SENDING) else None,
        today=utcnow().date(),
    )
