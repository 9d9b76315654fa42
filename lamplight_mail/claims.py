"""A delivery job's hold on outbox messages: claiming them with a lease, and recording what
happened to each, every change in its own short committed transaction.

No transaction stays open while SMTP talks. Every change after the claim applies only while the
lease is still this job's, so a worker that stalled past its lease cannot overwrite the work of
the worker that took its messages over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update

from lamplight_mail import rollups
from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus, Send, SendStatus, utcnow
from lamplight_mail.outbox import ACTIVE_SEND_STATUSES, OPEN_STATUSES
from lamplight_mail.transactions import write_transaction


@dataclass(frozen=True, slots=True)
class Claimed:
    """What the job needs of a claimed message: no ORM object outlives the claim."""

    id: int
    send_id: int
    recipient_email: str
    recipient_name: str
    message_id_header: str
    attempts: int  # including this one


@dataclass(frozen=True, slots=True)
class Outcome:
    status: MessageStatus  # SENT, FAILED or DEFERRED
    answer: str  # the server's own answer, or what went wrong
    code: int | None = None
    due_at: datetime | None = None  # DEFERRED: when it may be tried again


class Lease:
    """The messages one delivery job has claimed for one account."""

    def __init__(self, account_id: int, owner: str, seconds: float) -> None:
        self.account_id = account_id
        self.owner = owner  # unique per job: host, pid and a random part
        self.seconds = seconds
        self._renew_at = 0.0

    @property
    def expiring(self) -> bool:
        """A third of the lease has gone since it was last taken or renewed."""
        return time.monotonic() >= self._renew_at

    def _taken(self) -> tuple[datetime, datetime]:
        now = utcnow()
        self._renew_at = time.monotonic() + self.seconds / 3
        return now, now + timedelta(seconds=self.seconds)

    def claim(self, limit: int) -> list[Claimed]:
        """Claim up to `limit` due messages of the account, oldest due first.

        Due means: not yet sent and due now (pending, queued, a deferral that is due, or a
        message whose lease ran out because its worker died), in a send that may be delivered
        (never a flagged or cancelled one). A claimed message's due_at is its lease's end, so
        an abandoned claim becomes due again by itself.
        """
        now, expires = self._taken()
        due = (
            select(Message.id)
            .join(Send, Send.id == Message.send_id)
            .where(
                Message.account_id == self.account_id,
                Message.status.in_(OPEN_STATUSES),
                Message.due_at <= now,
                Send.status.in_(ACTIVE_SEND_STATUSES),
            )
            .order_by(Message.due_at, Message.id)
            .limit(limit)
            .with_for_update(of=Message, skip_locked=True)
        )
        with write_transaction():
            rows = db.session.execute(
                update(Message)
                .where(Message.id.in_(due.scalar_subquery()))
                .values(
                    status=MessageStatus.SENDING,
                    lease_owner=self.owner,
                    lease_expires_at=expires,
                    due_at=expires,
                    attempts=Message.attempts + 1,
                    updated_at=now,
                )
                .returning(
                    Message.id,
                    Message.send_id,
                    Message.recipient_email,
                    Message.recipient_name,
                    Message.message_id_header,
                    Message.attempts,
                )
                .execution_options(synchronize_session=False)
            ).all()
            if rows:
                db.session.execute(
                    update(Send)
                    .where(Send.id.in_({row.send_id for row in rows}))
                    .where(Send.status == SendStatus.QUEUED)
                    .values(status=SendStatus.SENDING)
                    .execution_options(synchronize_session=False)
                )
        return sorted((Claimed(*row) for row in rows), key=lambda claimed: claimed.id)

    def record(self, message: Claimed, outcome: Outcome, then: int | None = None) -> bool:
        """Record what happened to `message` (and count it in the day's rollup) if the lease
        is still ours. In the same transaction, say whether message `then`, the next one to
        send, is still ours: not cancelled, lease not lost."""
        now = utcnow()
        values = {
            "status": outcome.status,
            "last_code": outcome.code,
            "last_response": outcome.answer,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if outcome.status == MessageStatus.SENT:
            # Accepted is accepted: a send cancelled while this message was on the wire still
            # records that it went.
            allowed = (MessageStatus.SENDING, MessageStatus.CANCELLED)
            values["sent_at"] = now
        else:
            allowed = (MessageStatus.SENDING,)
            values["due_at"] = outcome.due_at or now
        with write_transaction():
            marked = db.session.execute(
                update(Message)
                .where(
                    Message.id == message.id,
                    Message.lease_owner == self.owner,
                    Message.status.in_(allowed),
                )
                .values(values)
                .execution_options(synchronize_session=False)
            ).rowcount
            if marked and outcome.status in (MessageStatus.SENT, MessageStatus.FAILED):
                rollups.record_outcome(
                    self.account_id,
                    now,
                    sent=int(outcome.status == MessageStatus.SENT),
                    failed=int(outcome.status == MessageStatus.FAILED),
                )
            return then is None or bool(self._held([then]))

    def held(self, ids: Iterable[int]) -> set[int]:
        """Which of `ids` this job still holds (the others were cancelled or taken over)."""
        try:
            return self._held(ids)
        finally:
            db.session.commit()  # ends the read: no transaction stays open while SMTP talks

    def _held(self, ids: Iterable[int]) -> set[int]:
        return set(
            db.session.scalars(
                select(Message.id).where(
                    Message.id.in_(list(ids)),
                    Message.lease_owner == self.owner,
                    Message.status == MessageStatus.SENDING,
                )
            )
        )

    def renew(self, ids: Iterable[int]) -> set[int]:
        """Extend the lease on `ids`; return those still held."""
        now, expires = self._taken()
        with write_transaction():
            rows = db.session.execute(
                update(Message)
                .where(
                    Message.id.in_(list(ids)),
                    Message.lease_owner == self.owner,
                    Message.status == MessageStatus.SENDING,
                )
                .values(lease_expires_at=expires, due_at=expires, updated_at=now)
                .returning(Message.id)
                .execution_options(synchronize_session=False)
            )
            return set(rows.scalars())

    def give_back(
        self,
        messages: Iterable[Claimed],
        *,
        status: MessageStatus = MessageStatus.QUEUED,
        due_at: datetime | None = None,
        answer: str | None = None,
    ) -> None:
        """Return messages this job claimed but did not try (stopping early, or the account
        was paused): the attempt is not counted, and they are due at `due_at` (now)."""
        ids = [message.id for message in messages]
        if not ids:
            return
        now = utcnow()
        values = {
            "status": status,
            "attempts": Message.attempts - 1,
            "due_at": due_at or now,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if answer is not None:
            values["last_response"] = answer
        with write_transaction():
            db.session.execute(
                update(Message)
                .where(
                    Message.id.in_(ids),
                    Message.lease_owner == self.owner,
                    Message.status == MessageStatus.SENDING,
                )
                .values(values)
                .execution_options(synchronize_session=False)
            )


def finish_sends(send_ids: Iterable[int]) -> None:
    """Mark done every one of these sends that has no message left to deliver.

    Every job calls this after its own last mark is committed, so whichever job finishes a
    send's last message sees all the others' marks.
    """
    ids = list(send_ids)
    if not ids:
        return
    still_open = exists().where(Message.send_id == Send.id, Message.status.in_(OPEN_STATUSES))
    with write_transaction():
        db.session.execute(
            update(Send)
            .where(Send.id.in_(ids), Send.status == SendStatus.SENDING, ~still_open)
            .values(status=SendStatus.DONE, finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )
