"""A delivery job's hold on outbox messages: claiming them with a lease, and recording what
happened to each, every change in its own short committed transaction.

No transaction stays open while SMTP talks. Every change after the claim applies only while the
lease is still this job's, so a worker that stalled past its lease cannot overwrite the work of
the worker that took its messages over.

This is the worker's hot path (a few statements per message sent), so it runs on a connection of
its own with statements built once, in SQLAlchemy Core rather than through the ORM session, and
its commits do not wait for the disk flush (SQLite synchronous=NORMAL under WAL, PostgreSQL
synchronous_commit=off). A worker killed at any moment loses none of them: the database has them.
Only a crash of the database machine itself can lose the last moment of marks, and those
messages would then be sent again; waiting for the disk instead would halve delivery speed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Connection, bindparam, exists, select, update

from lamplight_mail.delivery import latency, rollups
from lamplight_mail.delivery.outbox import ACTIVE_SEND_STATUSES, OPEN_STATUSES
from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus, Send, SendStatus, utcnow

# How often a job renews its lease on what it holds, learning at the same time which messages
# it lost (cancelled by an admin, or taken over after a stall): at most this late, it stops.
CHECK_SECONDS = 1.0

_messages = Message.__table__
_sends = Send.__table__


@dataclass(frozen=True, slots=True)
class Claimed:
    """What the job needs of a claimed message: no ORM object outlives the claim."""

    id: int
    send_id: int
    recipient_email: str
    recipient_name: str
    message_id_header: str
    attempts: int  # including this one
    merge_values: dict[str, str] | None = None
    unsubscribe_token: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: MessageStatus  # SENT, FAILED or DEFERRED
    answer: str  # the server's own answer, or what went wrong
    code: int | None = None
    due_at: datetime | None = None  # DEFERRED: when it may be tried again
    seconds: float | None = None  # how long the SMTP exchange took, when the server answered


def _ours(*statuses: MessageStatus):
    """The message named `message_id` while this lease (`owner`) holds it."""
    return (
        (_messages.c.id == bindparam("message_id"))
        & (_messages.c.lease_owner == bindparam("owner"))
        & _messages.c.status.in_(statuses)
    )


_RELEASED = {"lease_owner": None, "lease_expires_at": None}
# Accepted is accepted: a send cancelled while this message was on the wire still records that
# it went.
_MARK_SENT = (
    update(_messages)
    .where(_ours(MessageStatus.SENDING, MessageStatus.CANCELLED))
    .values(
        status=MessageStatus.SENT,
        sent_at=bindparam("now"),
        last_code=bindparam("code"),
        last_response=bindparam("answer"),
        updated_at=bindparam("now"),
        **_RELEASED,
    )
)
_MARK_NOT_SENT = (
    update(_messages)
    .where(_ours(MessageStatus.SENDING))
    .values(
        status=bindparam("status"),
        due_at=bindparam("due_at"),
        last_code=bindparam("code"),
        last_response=bindparam("answer"),
        updated_at=bindparam("now"),
        **_RELEASED,
    )
)


class Lease:
    """The messages one delivery job has claimed for one account, on a connection of its own
    (close() it when done)."""

    def __init__(self, account_id: int, owner: str, seconds: float) -> None:
        self.account_id = account_id
        self.owner = owner  # unique per job: host, pid and a random part
        self.seconds = seconds
        self._check_at = 0.0
        # On SQLite every transaction here begins IMMEDIATE: the write lock is taken up front,
        # so two claimers never read the same rows and a busy database is waited for. On
        # PostgreSQL the claim uses FOR UPDATE SKIP LOCKED instead.
        self._connection: Connection = db.engine.connect().execution_options(sqlite_immediate=True)
        self._durability(relaxed=True)

    def _durability(self, *, relaxed: bool) -> None:
        """Commits that do not wait for the disk flush (see the module docstring), and back to
        the default before the connection returns to the pool."""
        if self._connection.dialect.name == "sqlite":
            # A pragma cannot change inside a transaction: set it on the driver connection,
            # which SQLAlchemy leaves in autocommit between transactions here.
            level = "NORMAL" if relaxed else "FULL"
            self._connection.connection.driver_connection.execute(f"PRAGMA synchronous={level}")
        else:
            statement = "SET synchronous_commit TO off" if relaxed else "RESET synchronous_commit"
            self._connection.exec_driver_sql(statement)
            self._connection.commit()

    def close(self) -> None:
        try:
            self._durability(relaxed=False)
        finally:
            self._connection.close()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def due_for_check(self) -> bool:
        """Time to renew the lease and learn which messages are still ours."""
        return time.monotonic() >= self._check_at

    def _taken(self) -> tuple[datetime, datetime]:
        now = utcnow()
        self._check_at = time.monotonic() + min(CHECK_SECONDS, self.seconds / 3)
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
            select(_messages.c.id)
            .join(_sends, _sends.c.id == _messages.c.send_id)
            .where(
                _messages.c.account_id == self.account_id,
                _messages.c.status.in_(OPEN_STATUSES),
                _messages.c.due_at <= now,
                _sends.c.status.in_(ACTIVE_SEND_STATUSES),
            )
            .order_by(_messages.c.due_at, _messages.c.id)
            .limit(limit)
            .with_for_update(of=_messages, skip_locked=True)
        )
        with self._connection.begin():
            rows = self._connection.execute(
                update(_messages)
                .where(_messages.c.id.in_(due.scalar_subquery()))
                .values(
                    status=MessageStatus.SENDING,
                    lease_owner=self.owner,
                    lease_expires_at=expires,
                    due_at=expires,
                    attempts=_messages.c.attempts + 1,
                    updated_at=now,
                )
                .returning(
                    _messages.c.id,
                    _messages.c.send_id,
                    _messages.c.recipient_email,
                    _messages.c.recipient_name,
                    _messages.c.message_id_header,
                    _messages.c.attempts,
                    _messages.c.merge_values,
                    _messages.c.unsubscribe_token,
                )
            ).all()
            if rows:
                self._connection.execute(
                    update(_sends)
                    .where(
                        _sends.c.id.in_({row.send_id for row in rows}),
                        _sends.c.status == SendStatus.QUEUED,
                    )
                    .values(status=SendStatus.SENDING)
                )
        return sorted((Claimed(*row) for row in rows), key=lambda claimed: claimed.id)

    def record(self, message: Claimed, outcome: Outcome) -> bool:
        """Record what happened to `message`, and count it in the day's rollup, in one
        transaction; False (nothing changed) when the lease is no longer ours."""
        now = utcnow()
        params = {
            "message_id": message.id,
            "owner": self.owner,
            "now": now,
            "code": outcome.code,
            "answer": outcome.answer,
        }
        with self._connection.begin():
            if outcome.status == MessageStatus.SENT:
                marked = self._connection.execute(_MARK_SENT, params).rowcount
            else:
                params.update(status=outcome.status, due_at=outcome.due_at or now)
                marked = self._connection.execute(_MARK_NOT_SENT, params).rowcount
            if marked and outcome.status in (MessageStatus.SENT, MessageStatus.FAILED):
                rollups.record_outcome(
                    self.account_id,
                    now,
                    sent=int(outcome.status == MessageStatus.SENT),
                    failed=int(outcome.status == MessageStatus.FAILED),
                    connection=self._connection,
                )
        return bool(marked)

    def renew(self, ids: Iterable[int]) -> set[int]:
        """Extend the lease on `ids`; return those still held (the others were cancelled or
        taken over)."""
        now, expires = self._taken()
        with self._connection.begin():
            rows = self._connection.execute(
                update(_messages)
                .where(
                    _messages.c.id.in_(list(ids)),
                    _messages.c.lease_owner == self.owner,
                    _messages.c.status == MessageStatus.SENDING,
                )
                .values(lease_expires_at=expires, due_at=expires, updated_at=now)
                .returning(_messages.c.id)
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
            "attempts": _messages.c.attempts - 1,
            "due_at": due_at or now,
            "updated_at": now,
            **_RELEASED,
        }
        if answer is not None:
            values["last_response"] = answer
        with self._connection.begin():
            self._connection.execute(
                update(_messages)
                .where(
                    _messages.c.id.in_(ids),
                    _messages.c.lease_owner == self.owner,
                    _messages.c.status == MessageStatus.SENDING,
                )
                .values(values)
            )

    def finish_sends(self, send_ids: Iterable[int]) -> None:
        """Mark done every one of these sends that has no message left to deliver.

        Every job calls this after its own last mark is committed, so whichever job finishes a
        send's last message sees all the others' marks.
        """
        ids = list(send_ids)
        if not ids:
            return
        still_open = exists().where(
            _messages.c.send_id == _sends.c.id, _messages.c.status.in_(OPEN_STATUSES)
        )
        with self._connection.begin():
            self._connection.execute(
                update(_sends)
                .where(_sends.c.id.in_(ids), _sends.c.status == SendStatus.SENDING, ~still_open)
                .values(status=SendStatus.DONE, finished_at=utcnow())
            )


class Recorder:
    """Records outcomes (and the SMTP latency for /metrics) on a thread of its own, with its own
    connection, one at a time, so a message's mark is written while the next message's envelope
    is on the wire.

    `wait()` before the next message's content goes: then no message can be accepted by the
    server before the one ahead of it is marked, and a worker killed at any moment leaves at most
    one accepted message unmarked (sent again later), as if it recorded synchronously.
    """

    def __init__(self, account_id: int, owner: str, seconds: float) -> None:
        self._executor = ThreadPoolExecutor(
            1,
            thread_name_prefix=f"recorder-{account_id}",
            # The thread works in the app's context for as long as it lives.
            initializer=current_app._get_current_object().app_context().push,
        )
        self._pending: Future[bool] | None = None
        # Made on the recorder's thread: a SQLite connection stays with its thread.
        self._lease = self._executor.submit(Lease, account_id, owner, seconds).result()

    def record(self, message: Claimed, outcome: Outcome) -> None:
        self.wait()
        self._pending = self._executor.submit(self._record, message, outcome)

    def _record(self, message: Claimed, outcome: Outcome) -> bool:
        marked = self._lease.record(message, outcome)
        if outcome.seconds is not None:
            latency.observe_smtp_latency(outcome.seconds)
        return marked

    def wait(self) -> None:
        """Until the last outcome is committed; raises what recording it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._executor.submit(self._lease.close).result()
            self._executor.shutdown()
