"""/u/<token>: a recipient's own unsubscribe link. GET shows a confirm button, so a link
scanner that follows every link unsubscribes nobody; POST (the button, or a mail program's
RFC 8058 one-click request) puts the address on the do-not-email list. No login, no CSRF
token: the unguessable per-recipient token is the authority, and it can only unsubscribe."""

from __future__ import annotations

from flask import Blueprint, abort, render_template
from sqlalchemy import select

from lamplight_mail import suppressions
from lamplight_mail.extensions import csrf, db
from lamplight_mail.models import EmailAccount, Message

bp = Blueprint("unsubscribe", __name__)


def _message_or_404(token: str) -> Message:
    if not token or len(token) > 64:
        abort(404)
    return db.session.scalar(select(Message).where(Message.unsubscribe_token == token)) or abort(
        404
    )


def _sender(message: Message) -> str:
    account: EmailAccount = message.account
    return account.from_name or account.from_email


@bp.get("/u/<token>")
def confirm(token: str) -> str:
    message = _message_or_404(token)
    return render_template("unsubscribe/confirm.html", token=token, sender=_sender(message))


@bp.post("/u/<token>")
@csrf.exempt
def unsubscribe(token: str) -> str:
    message = _message_or_404(token)
    suppressions.unsubscribe(message.recipient_email)
    return render_template("unsubscribe/done.html", sender=_sender(message))
