"""A delivery job's hold on outbox messages: claiming them with a lease, and recording what
happened to each, every change in its own short committed transaction.

No transaction stays open while SMTP talks. Every change after the claim applies only while the
lease is still this job's, so a worker that stalled past its lease cannot overwrite the work of
the worker that took its messages over.

This is the worker's hot path (a few statements per message sent), so it runs on a connection of
its own with statements built once, in SQLAlchemy Core rather than through the ORM session, and
the marks run on the driver's cursor (see driver_sql). Every commit is durable (the database's
default flush to disk): a mark acknowledged and then lost in a database crash would send that
message again. The speed comes from overlap and sharing instead
(see Recorder): a message's mark is written while the next message travels, the marks of all of a
process's connections that arrive while a commit is under way share the next one, and marks
that need not precede the next acceptance wait for a commit that must happen anyway.

A lost database connection (a restart, a killed backend) is reconnected and the change made
again, for up to RECONNECT_SECONDS: every change here is safe to repeat, since it applies only
while the lease is ours.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from flask import Flask, current_app
from sqlalchemy import Connection, bindparam, exists, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from lamplight_mail.delivery import driver_sql, latency, rollups
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
# At most this many marks of refused or deferred messages wait for a shared commit (see Recorder).
GROUP_MARKS = 20
# A mark waits this long at most for marks of the process's other connections to share its
# commit (less when they all have one waiting, or when its connection needs it committed).
GROUP_WAIT_SECONDS = 0.005
# SMTP latencies for /metrics go to Redis at most this often, in one round trip.
LATENCY_FLUSH_SECONDS = 1.0

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
    # Equalities, not IN: an IN list is expanded again at every execution, and these run for
    # every message.
    return (
        (_messages.c.id == bindparam("message_id"))
        & (_messages.c.lease_owner == bindparam("owner"))
        & or_(*(_messages.c.status == status for status in statuses))
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


class _Database:
    """A database connection of its own for short committed writes (close() it when done)."""

    def __init__(self) -> None:
        self._connection: Connection | None = None

    def _connect(self) -> Connection:
        # On SQLite every transaction here begins IMMEDIATE: the write lock is taken up front,
        # so two claimers never read the same rows and a busy database is waited for. On
        # PostgreSQL the claim uses FOR UPDATE SKIP LOCKED instead.
        return db.engine.connect().execution_options(sqlite_immediate=True)

    def write(self, change: Callable[[Connection], T]) -> T:
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
                self.close()
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):  # already gone
                self._connection.close()
            self._connection = None


Marks = list[tuple[Claimed, Outcome]]


def _write_marks(connection: Connection, groups: list[tuple[str, int, Marks]]) -> list[int]:
    """Record each group's outcomes (a lease's owner, its account, its marks), and count them
    in the day's rollups, in the caller's transaction; how many of each group were marked
    (a mark applies only while the lease is its owner's)."""
    now = utcnow()
    counted: dict[int, list[int]] = {}  # account id: [sent, failed]
    marked = []
    for owner, account_id, marks in groups:
        done_here = 0
        for message, outcome in marks:
            params = {
                "message_id": message.id,
                "owner": owner,
                "now": now,
                "code": outcome.code,
                "answer": outcome.answer,
            }
            if outcome.status == MessageStatus.SENT:
                done = driver_sql.execute(connection, _MARK_SENT, params)
            else:
                params.update(status=outcome.status, due_at=outcome.due_at or now)
                done = driver_sql.execute(connection, _MARK_NOT_SENT, params)
            done_here += done
            if done and outcome.status in (MessageStatus.SENT, MessageStatus.FAILED):
                counts = counted.setdefault(account_id, [0, 0])
                counts[outcome.status == MessageStatus.FAILED] += 1
        marked.append(done_here)
    # One counter update per account, however many marks.
    for account_id, (sent, failed) in counted.items():
        rollups.record_outcome(account_id, now, sent=sent, failed=failed, connection=connection)
    return marked


class Lease:
    """The messages one delivery job has claimed for one account, on a connection of its own
    (close() it when done)."""

    def __init__(self, account_id: int, owner: str, seconds: float) -> None:
        self.account_id = account_id
        self.owner = owner  # unique per job: host, pid and a random part
        self.seconds = seconds
        self._check_at = 0.0
        self._lapses_at = 0.0
        self._database = _Database()
        self._write = self._database.write

    def close(self) -> None:
        self._database.close()

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

    def record_all(self, marks: Marks) -> int:
        """Record several outcomes in one transaction; how many were marked."""
        return self._write(
            lambda connection: _write_marks(connection, [(self.owner, self.account_id, marks)])[0]
        )

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


class _MarkWriter:
    """Commits the marks of every delivery of one app in this process on one thread with one
    database connection, so a durable commit costs the database (and this process's CPU) once
    for several messages: whatever marks arrive while a commit is under way share the next one,
    and a mark waits up to GROUP_WAIT_SECONDS for the other connections' marks, unless each
    has one queued or a connection is waiting for its mark (hurry) at its final dot; the wait
    passes while the connection sends its next message, up to that dot.
    Each submission's Future ends when its marks are committed."""

    def __init__(self, app: Flask) -> None:
        self.users = 0  # Recorders using it (see _writers)
        self._app = app
        self._queue: list[tuple[str, int, Marks, Future[int]]] = []
        self._changed = threading.Condition()
        self._closing = False
        self._hurry = False
        self._latencies: list[float] = []
        self._latencies_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="marks", daemon=True)
        self._thread.start()

    def _commit_now(self) -> bool:
        # Also when every delivery using the writer has a mark waiting: no more are coming.
        return self._hurry or self._closing or len({item[0] for item in self._queue}) >= self.users

    def hurry(self) -> None:
        """A connection waits for its mark: commit what is queued now."""
        with self._changed:
            self._hurry = True
            self._changed.notify()

    def submit(self, owner: str, account_id: int, marks: Marks) -> Future[int]:
        future: Future[int] = Future()
        with self._changed:
            self._queue.append((owner, account_id, marks, future))
            self._changed.notify()
        return future

    def close(self) -> None:
        """Commit what was submitted, then stop."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        with self._app.app_context():
            database = _Database()
            try:
                while True:
                    with self._changed:
                        self._changed.wait_for(lambda: self._queue or self._closing)
                        # A moment for the other connections' marks to join, unless a
                        # connection is already waiting for its mark at its final dot.
                        self._changed.wait_for(self._commit_now, GROUP_WAIT_SECONDS)
                        waiting, self._queue, self._hurry = self._queue, [], False
                    if not waiting:
                        return
                    self._commit(database, waiting)
            finally:
                database.close()
                self._observe_latencies()

    def _commit(self, database: _Database, waiting: list) -> None:
        groups = [(owner, account_id, marks) for owner, account_id, marks, _ in waiting]
        try:
            marked = database.write(lambda connection: _write_marks(connection, groups))
        except BaseException as error:
            for *_, future in waiting:
                future.set_exception(error)
            return
        for (*_, future), count in zip(waiting, marked, strict=True):
            future.set_result(count)
        # After the marks are durable and their senders told: /metrics can wait, a message
        # should not.
        self._latencies += [
            outcome.seconds
            for _, _, marks in groups
            for _, outcome in marks
            if outcome.seconds is not None
        ]
        if time.monotonic() - self._latencies_since >= LATENCY_FLUSH_SECONDS:
            self._observe_latencies()

    def _observe_latencies(self) -> None:
        latencies, self._latencies = self._latencies, []
        self._latencies_since = time.monotonic()
        if latencies:
            latency.observe_smtp_latencies(latencies)


class _Writers:
    """The mark writer of each app in this process, alive while any delivery uses it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writers: dict[Flask, _MarkWriter] = {}

    def join(self, app: Flask) -> _MarkWriter:
        with self._lock:
            writer = self._writers.get(app)
            if writer is None:
                writer = self._writers[app] = _MarkWriter(app)
            writer.users += 1
            return writer

    def leave(self, app: Flask, writer: _MarkWriter) -> None:
        with self._lock:
            writer.users -= 1
            if writer.users:
                return
            del self._writers[app]
        writer.close()


_writers = _Writers()


class Recorder:
    """Records one delivery's outcomes (and the SMTP latency for /metrics) through the process's
    mark writer, so a message's mark is written while the next message travels, in a commit it
    may share with other connections' marks.

    `wait()` right before the next message is ended (see the transport's before_acceptance): then
    no message can be accepted by the server before the mark of the one ahead of it is durable,
    and a worker killed at any moment leaves at most one accepted message unmarked per
    connection (sent again later), as if it recorded synchronously.

    Marks that need not come first (a refusal, a deferral: a message the server did not take,
    which costs nothing but a retry if its mark is lost) wait and share the commit of the next
    mark that must, up to GROUP_MARKS of them or CHECK_SECONDS old.
    """

    def __init__(self, account_id: int, owner: str) -> None:
        self._account_id = account_id
        self._owner = owner
        self._app = current_app._get_current_object()
        self._writer = _writers.join(self._app)
        self._pending: Future[int] | None = None
        self._waiting: Marks = []
        self._waiting_since = 0.0

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
            self._pending = self._writer.submit(self._owner, self._account_id, marks)

    def wait(self) -> None:
        """Until every mark that must come first is committed; raises what committing it
        raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            if not pending.done():
                self._writer.hurry()
            pending.result()

    def close(self) -> None:
        try:
            self._flush()
            self.wait()
        finally:
            _writers.leave(self._app, self._writer)
