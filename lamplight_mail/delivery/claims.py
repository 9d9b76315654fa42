"""A delivery job's hold on outbox messages: claiming them with a lease, and recording what
happened to each, every change in its own short committed transaction.

No transaction stays open while SMTP talks. Every change after the claim applies only while the
lease is still this job's, so a worker that stalled past its lease cannot overwrite the work of
the worker that took its messages over.

This is the worker's hot path (a few statements per message sent), so it runs on a connection of
its own with statements built once, in SQLAlchemy Core rather than through the ORM session. Every
commit is durable (the database's default flush to disk): a mark acknowledged and then lost in a
database crash would send that message again. The speed comes from overlap instead (see
Recorder): a message's mark is written while the next message travels, and marks that need not
precede the next acceptance share a commit.

A lost database connection (a restart, a killed backend) is reconnected and the change made
again, for up to RECONNECT_SECONDS: every change here is safe to repeat, since it applies only
while the lease is ours.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from flask import current_app
from sqlalchemy import Connection, bindparam, exists, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from lamplight_mail.delivery import latency, rollups
from lamplight_mail.delivery.outbox import ACTIVE_SEND_STATUSES, OPEN_STATUSES
from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus, Send, SendStatus, utcnow

# How often a job renews its lease on what it holds, learning at the same time which messages
# it lost (cancelled by an admin, or taken over after a stall): at most this late, it stops.
CHECK_SECONDS = 1.0
# How long a change waits for a lost database connection to come back before giving up. A mark
# given up leaves an accepted message to be sent again once its lease runs out, so this is long
# enough to ride out a database restart.
RECONNECT_SECONDS = 60.0
# At most this many marks share a commit (see Recorder).
GROUP_MARKS = 20

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    may_have_arrived: bool = False  # FAILED with an unknown outcome: never to be sent again

    @property
    def must_be_durable_first(self) -> bool:
        """Whether this mark must be committed before the next message can be accepted: lost,
        it would have the message sent again."""
        return self.status == MessageStatus.SENT or self.may_have_arrived


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
        self._lapses_at = 0.0
        self._connection: Connection | None = None

    def _connect(self) -> Connection:
        # On SQLite every transaction here begins IMMEDIATE: the write lock is taken up front,
        # so two claimers never read the same rows and a busy database is waited for. On
        # PostgreSQL the claim uses FOR UPDATE SKIP LOCKED instead.
        return db.engine.connect().execution_options(sqlite_immediate=True)

    def _write(self, change: Callable[[Connection], T]) -> T:
        """Run `change` in one committed transaction, reconnecting and running it again while
        the database connection is lost (see the module docstring)."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        delay = 0.05
        while True:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                with self._connection.begin():
                    return change(self._connection)
            except DBAPIError as error:
                lost = error.connection_invalidated or isinstance(error, OperationalError)
                if not lost or time.monotonic() >= deadline:
                    raise
                log.warning("database connection lost, reconnecting: %s", error.orig)
                self._discard()
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _discard(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):  # already gone
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        self._discard()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def due_for_check(self) -> bool:
        """Time to renew the lease and learn which messages are still ours."""
        return time.monotonic() >= self._check_at

    def lasts(self, seconds: float) -> bool:
        """Whether what this lease last claimed or renewed is still ours `seconds` from now."""
        return time.monotonic() + seconds <= self._lapses_at

    def _taken(self) -> tuple[datetime, datetime]:
        now, taken = utcnow(), time.monotonic()
        self._check_at = taken + min(CHECK_SECONDS, self.seconds / 3)
        self._lapses_at = taken + self.seconds
        return now, now + timedelta(seconds=self.seconds)

    def claim(self, limit: int) -> list[Claimed]:
        """Claim up to `limit` due messages of the account: first those whose lease ran out
        (their worker died: they have waited longest, whatever their due time says), then the
        others, oldest due first.

        Due means: not yet sent and due now (pending, queued, a deferral that is due, or a
        message whose lease ran out), in a send that may be delivered (never a flagged or
        cancelled one). A claimed message's due_at is its lease's end, so an abandoned claim
        becomes due again by itself.
        """
        now, expires = self._taken()

        def due(statuses: Iterable[MessageStatus], room: int):
            return (
                select(_messages.c.id)
                .join(_sends, _sends.c.id == _messages.c.send_id)
                .where(
                    _messages.c.account_id == self.account_id,
                    _messages.c.status.in_(list(statuses)),
                    _messages.c.due_at <= now,
                    _sends.c.status.in_(ACTIVE_SEND_STATUSES),
                )
                .order_by(_messages.c.due_at, _messages.c.id)
                .limit(room)
                .with_for_update(of=_messages, skip_locked=True)
            )

        def take(connection: Connection, statuses: Iterable[MessageStatus], room: int) -> list:
            return connection.execute(
                update(_messages)
                .where(_messages.c.id.in_(due(statuses, room).scalar_subquery()))
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

        def change(connection: Connection) -> list:
            # Two index range scans (account, status, due_at), each stopping at `limit` rows:
            # no sort of the whole backlog to put the expired leases first.
            rows = take(connection, [MessageStatus.SENDING], limit)
            if len(rows) < limit:
                waiting = [status for status in OPEN_STATUSES if status != MessageStatus.SENDING]
                rows += take(connection, waiting, limit - len(rows))
            if rows:
                connection.execute(
                    update(_sends)
                    .where(
                        _sends.c.id.in_({row.send_id for row in rows}),
                        _sends.c.status == SendStatus.QUEUED,
                    )
                    .values(status=SendStatus.SENDING)
                )
            return rows

        rows = self._write(change)
        return sorted((Claimed(*row) for row in rows), key=lambda claimed: claimed.id)

    def record(self, message: Claimed, outcome: Outcome) -> bool:
        """Record what happened to `message`, and count it in the day's rollup, in one
        transaction; False (nothing changed) when the lease is no longer ours."""
        return bool(self.record_all([(message, outcome)]))

    def record_all(self, marks: list[tuple[Claimed, Outcome]]) -> int:
        """Record several outcomes in one transaction; how many were marked."""

        def change(connection: Connection) -> int:
            now = utcnow()
            marked = 0
            for message, outcome in marks:
                params = {
                    "message_id": message.id,
                    "owner": self.owner,
                    "now": now,
                    "code": outcome.code,
                    "answer": outcome.answer,
                }
                if outcome.status == MessageStatus.SENT:
                    done = connection.execute(_MARK_SENT, params).rowcount
                else:
                    params.update(status=outcome.status, due_at=outcome.due_at or now)
                    done = connection.execute(_MARK_NOT_SENT, params).rowcount
                marked += done
                if done and outcome.status in (MessageStatus.SENT, MessageStatus.FAILED):
                    rollups.record_outcome(
                        self.account_id,
                        now,
                        sent=int(outcome.status == MessageStatus.SENT),
                        failed=int(outcome.status == MessageStatus.FAILED),
                        connection=connection,
                    )
            return marked

        return self._write(change)

    def renew(self, ids: Iterable[int]) -> set[int]:
        """Extend the lease on `ids`; return those still held (the others were cancelled or
        taken over)."""
        now, expires = self._taken()
        return self._extend(list(ids), now, expires)

    def keep(self, message_id: int, seconds: float) -> bool:
        """Hold one message for `seconds` from now (past the lease's usual length, if need be,
        while the server's answer to it and its mark are awaited); False when it is no longer
        ours. The batch's own renewals (and `lasts`) are left as they were."""
        now = utcnow()
        return message_id in self._extend([message_id], now, now + timedelta(seconds=seconds))

    def _extend(self, ids: list[int], now: datetime, expires: datetime) -> set[int]:
        return self._write(
            lambda connection: set(
                connection.execute(
                    update(_messages)
                    .where(
                        _messages.c.id.in_(ids),
                        _messages.c.lease_owner == self.owner,
                        _messages.c.status == MessageStatus.SENDING,
                    )
                    .values(lease_expires_at=expires, due_at=expires, updated_at=now)
                    .returning(_messages.c.id)
                ).scalars()
            )
        )

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
        self._write(
            lambda connection: connection.execute(
                update(_messages)
                .where(
                    _messages.c.id.in_(ids),
                    _messages.c.lease_owner == self.owner,
                    _messages.c.status == MessageStatus.SENDING,
                )
                .values(values)
            )
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
        self._write(
            lambda connection: connection.execute(
                update(_sends)
                .where(_sends.c.id.in_(ids), _sends.c.status == SendStatus.SENDING, ~still_open)
                .values(status=SendStatus.DONE, finished_at=utcnow())
            )
        )


class Recorder:
    """Records outcomes (and the SMTP latency for /metrics) on a thread of its own, with its own
    connection, so a message's mark is written while the next message travels.

    `wait()` right before the next message is ended (see the transport's before_acceptance): then
    no message can be accepted by the server before the mark of the one ahead of it is durable,
    and a worker killed at any moment leaves at most one accepted message unmarked (sent again
    later), as if it recorded synchronously.

    Marks that need not come first (a refusal, a deferral: a message the server did not take,
    which costs nothing but a retry if its mark is lost) wait and share the commit of the next
    mark that must, up to GROUP_MARKS of them or CHECK_SECONDS old.
    """

    def __init__(self, account_id: int, owner: str, seconds: float) -> None:
        self._executor = ThreadPoolExecutor(
            1,
            thread_name_prefix=f"recorder-{account_id}",
            # The thread works in the app's context for as long as it lives.
            initializer=current_app._get_current_object().app_context().push,
        )
        self._pending: Future[int] | None = None
        self._waiting: list[tuple[Claimed, Outcome]] = []
        self._waiting_since = 0.0
        # Made on the recorder's thread: a SQLite connection stays with its thread.
        self._lease = self._executor.submit(Lease, account_id, owner, seconds).result()

    def record(self, message: Claimed, outcome: Outcome) -> None:
        if not self._waiting:
            self._waiting_since = time.monotonic()
        self._waiting.append((message, outcome))
        if (
            outcome.must_be_durable_first
            or len(self._waiting) >= GROUP_MARKS
            or time.monotonic() - self._waiting_since >= CHECK_SECONDS
        ):
            self._flush()

    def _flush(self) -> None:
        self.wait()  # one commit at a time, in order
        marks, self._waiting = self._waiting, []
        if marks:
            self._pending = self._executor.submit(self._record, marks)

    def _record(self, marks: list[tuple[Claimed, Outcome]]) -> int:
        marked = self._lease.record_all(marks)
        for _, outcome in marks:
            if outcome.seconds is not None:
                latency.observe_smtp_latency(outcome.seconds)
        return marked

    def wait(self) -> None:
        """Until every mark that must come first is committed; raises what committing it
        raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self._flush()
            self.wait()
        finally:
            self._executor.submit(self._lease.close).result()
            self._executor.shutdown()
