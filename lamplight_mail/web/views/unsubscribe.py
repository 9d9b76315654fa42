"""/u/<token>: a recipient's own unsubscribe link. GET shows a confirm button, so a link
scanner that follows every link unsubscribes nobody; POST (the button, or a mail program's
RFC 8058 one-click request) puts the address on the do-not-email list. No login, no CSRF
token: the unguessable per-recipient token is the authority, and it can only unsubscribe."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select

from lamplight_mail import suppressions
from lamplight_mail.extensions import csrf, db
from lamplight_mail.models import EmailAccount, Message

bp = Blueprint("unsubscribe", __name__)


def _message(token: str) -> Message | None:
    if not token or len(token) > 64:
        return None
    return db.session.scalar(select(Message).where(Message.unsubscribe_token == token))


def _sender(message: Message) -> str:
    account: EmailAccount = message.account
    return account.from_name or account.from_email


def masked(address: str) -> str:
    """Enough of the address for its owner to recognise it, not enough for anyone who was
    forwarded the email to read it: o***@example.org."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _not_valid() -> tuple[str, int]:
    # A recipient is not a user: no login page, just what happened and what to do.
    return render_template("unsubscribe/invalid.html"), 404


@bp.get("/u/<token>")
def confirm(token: str) -> str | tuple[str, int]:
    message = _message(token)
    if message is None:
        return _not_valid()
    address = message.recipient_email
    if suppressions.listed([address]):
        return render_template(
            "unsubscribe/done.html", sender=_sender(message), address=masked(address), already=True
        )
    return render_template(
        "unsubscribe/confirm.html", token=token, sender=_sender(message), address=masked(address)
    )


@bp.post("/u/<token>")
@csrf.exempt
def unsubscribe(token: str) -> str | tuple[str, int]:
    message = _message(token)
    if message is None:
        return _not_valid()
    added = suppressions.unsubscribe(message.recipient_email)
    return render_template(
        "unsubscribe/done.html",
        sender=_sender(message),
        address=masked(message.recipient_email),
        already=not added,
    )
