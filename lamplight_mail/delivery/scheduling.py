"""Scheduled sends: held, their messages pending, until their send_at; then judged again (the
account's allowance and the flag threshold as they are then, and the do-not-email list) and
queued, or flagged for an admin. The workers' sweep starts them when due; the sender may start
one sooner ("send now")."""

from __future__ import annotations

import logging

from sqlalchemy import select

from lamplight_mail import audit, suppressions
from lamplight_mail.delivery import outbox
from lamplight_mail.delivery.transactions import write_transaction
from lamplight_mail.extensions import db
from lamplight_mail.models import Send, SendStatus, User, utcnow

log = logging.getLogger(__name__)


def start_due() -> list[int]:
    """Start every scheduled send whose time has come; returns their ids."""
    due = list(
        db.session.scalars(
            select(Send.id).where(Send.status == SendStatus.SCHEDULED, Send.send_at <= utcnow())
        )
    )
    db.session.commit()  # ends the read before each send's own transaction
    started = []
    for send_id in due:
        send = db.session.get(Send, send_id)
        try:
            start(send, None)
        except outbox.SendStateError:
            continue  # cancelled or started meanwhile
        started.append(send_id)
    return started


def start(send: Send, actor: User | None) -> SendStatus:
    """Start a scheduled send now (commits): flagged when it no longer fits its account's
    allowance (unless an admin released it already), else queued and enqueued. `actor` is
    the person who chose "send now", None when it fell due."""
    left_out = suppressions.leave_out(send.id)
    remaining = send.recipient_count - left_out
    reason = None if send.released_at else outbox.flag_reason(send.account, remaining)
    with write_transaction():
        db.session.refresh(send, with_for_update=True)
        if send.status != SendStatus.SCHEDULED:
            raise outbox.SendStateError(f"This send is {send.status.value}, not scheduled.")
        now = utcnow()
        if reason:
            send.status = SendStatus.FLAGGED
            send.flag_reason = reason
        else:
            send.status = SendStatus.QUEUED
            outbox.queue_pending(send.id, now)
        if actor is not None:
            send.send_at = now
            audit.record(
                "send.sent_now",
                "send",
                send.id,
                f"Started scheduled send {send.id} (“{send.subject}”) before its time",
                {"status": send.status.value},
                actor=actor,
            )
    if send.status == SendStatus.QUEUED:
        outbox.enqueue_delivery(send.account_id)
    else:
        log.info("scheduled send %s flagged when due: %s", send.id, reason)
    return send.status
