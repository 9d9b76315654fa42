"""The do-not-email list: addresses the organisation never sends to, whether an admin put
them there, imported them, or the person used an unsubscribe link."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select, update

from lamplight_mail import audit
from lamplight_mail.delivery.transactions import write_transaction
from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus, Suppression, User, utcnow

# IN lists stay well under every database's limit on bound parameters.
CHUNK = 500
LEFT_OUT_ANSWER = "Not sent: the address is on the do-not-email list."


def listed(addresses: Iterable[str]) -> set[str]:
    """Which of the addresses are on the list (lower-cased)."""
    wanted = sorted({address.lower() for address in addresses})
    found: set[str] = set()
    for at in range(0, len(wanted), CHUNK):
        found.update(
            db.session.scalars(
                select(Suppression.email).where(Suppression.email.in_(wanted[at : at + CHUNK]))
            )
        )
    return found


def add(addresses: Sequence[str], source: str, actor: User | None) -> list[str]:
    """Put the addresses on the list (the caller commits and audits); return those that were
    not on it already."""
    already = listed(addresses)
    new = sorted({address.lower() for address in addresses} - already)
    db.session.add_all(
        Suppression(email=address, source=source, created_by_id=actor.id if actor else None)
        for address in new
    )
    db.session.flush()
    return new


def unsubscribe(address: str) -> bool:
    """The person asked, through their link: on the list (commits); False if already there."""
    added = add([address], "unsubscribe", None)
    if added:
        audit.record(
            "suppression.unsubscribed",
            "suppression",
            None,
            f"{address.lower()} unsubscribed through the link in an email",
            {"email": address.lower()},
            actor=None,
        )
    db.session.commit()
    return bool(added)


def waiting_on_list(send_id: int) -> list[int]:
    """The send's waiting (pending) messages to addresses put on the list since it was
    composed: what `leave_out` would cancel."""
    waiting = db.session.execute(
        select(Message.id, Message.recipient_email).where(
            Message.send_id == send_id, Message.status == MessageStatus.PENDING
        )
    ).all()
    on_list = listed(email for _, email in waiting)
    return [message_id for message_id, email in waiting if email.lower() in on_list]


def leave_out(send_id: int) -> int:
    """Cancel the send's waiting (pending) messages to addresses put on the list since it was
    composed, before it is released or falls due; returns how many (commits)."""
    ids = waiting_on_list(send_id)
    if not ids:
        db.session.commit()  # ends the read
        return 0
    with write_transaction():
        for at in range(0, len(ids), CHUNK):
            db.session.execute(
                update(Message)
                .where(
                    Message.id.in_(ids[at : at + CHUNK]), Message.status == MessageStatus.PENDING
                )
                .values(
                    status=MessageStatus.CANCELLED,
                    last_response=LEFT_OUT_ANSWER,
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
    return len(ids)
