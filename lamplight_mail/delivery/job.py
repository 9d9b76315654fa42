"""What the worker runs: deliver one account's due messages over one SMTP connection.

A job carries an account id and nothing else. It claims a batch of due messages with a lease,
connects once (STARTTLS or TLS, AUTH), sends each message on that connection and records its
outcome right after the server answers, then claims the next batch, until nothing is due or the
job has had its share of the worker. Up to the account's connection cap of these jobs run at
once, across every worker.

Every message takes its place in the limiter's windows (limits.py) right before it goes: a run of
places is reserved in one round trip and taken one message at a time while it lasts (a second at
most). A refusal gives the rest of the batch back, deferred to the moment the limiter names,
without counting an attempt, and schedules a job for that moment: no worker waits on an account
that may not send, and other accounts' mail goes on. Without Redis nothing is sent at all, since
unmetered mail could overrun the account's limit; the sweep picks the mail up again once Redis
is back.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

import redis
from flask import current_app

from lamplight_mail import crypto, suppressions
from lamplight_mail.accounts import health, resolution
from lamplight_mail.delivery import connections, limits, outbox
from lamplight_mail.delivery.claims import Claimed, Lease, Outcome, Recorder
from lamplight_mail.delivery.mime import HeaderInjection
from lamplight_mail.delivery.send_template import AttachedFile, SendTemplate
from lamplight_mail.delivery.transports import open_transport
from lamplight_mail.delivery.transports.base import (
    Answer,
    ConnectionSettings,
    Transport,
    TransportFailure,
)
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, MessageStatus, Send, utcnow
from lamplight_mail.providers import AnswerKind

log = logging.getLogger(__name__)

# An account whose whole allowance is kept in reserve (or zero) can send nothing: look again
# after this long, in case an admin raised its limit.
NO_ALLOWANCE_RETRY = timedelta(hours=1)
# Room, past the server's answer, for a message's mark to be written while its lease holds.
MARK_SECONDS = 5.0


# Set when the worker is asked to stop (SIGTERM): the message on the wire finishes, the rest of
# the batch is given back untried, due now, for another worker.
stop_requested = threading.Event()


def deliver(account_id: int) -> None:
    """The RQ job. In a worker process it starts the account's delivery on one of the worker's
    connection threads and returns at once (see connections.py); elsewhere it delivers here."""
    threads = connections.current()
    if threads is not None:
        threads.start(deliver_now, account_id)
        return
    deliver_now(account_id)


def deliver_now(account_id: int) -> None:
    """Deliver what is due for the account on this thread, then hand over to a fresh job if
    time ran out with work left."""
    try:
        _deliver(account_id)
    except redis.RedisError as error:
        # Nothing unmetered goes: without Redis the job ends, its claims given back, and the
        # sweep starts a new one once Redis is back.
        log.warning("account %s: delivery stopped, Redis cannot be reached: %s", account_id, error)


def _deliver(account_id: int) -> None:
    outbox.delivery_started(account_id)
    try:
        account = db.session.get(EmailAccount, account_id)
        if account is None or account.paused_at is not None:
            return
        # The job's own copy of the account's settings and limits (changes apply from the next
        # job): the session's commits must not expire it, or reading it again would hold a
        # transaction open while SMTP talks.
        db.session.expunge(account)
        # After a Redis loss the limiter rebuilds its windows from the sent log, counting every
        # claimed message as possibly on the wire: rebuilt now, before this job claims any.
        limits.ensure_windows(account_id)
        delivery = Delivery.prepare(account)
        if delivery is None:
            return
        with limits.connection_slot(account, delivery.lease_seconds) as slot:
            if slot is None:
                return  # the account's other connections are draining its mail
            out_of_time = delivery.run(slot)
        if out_of_time:
            outbox.enqueue_delivery(account_id)
    finally:
        db.session.remove()


def backoff(attempts: int, base: float, cap: float) -> timedelta:
    """Exponential backoff with jitter: about base, 2 x base, 4 x base ... up to cap, each
    drawn from its upper half so retries from many messages spread out."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=random.uniform(delay / 2, delay))


def _owner() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Delivery:
    """One job's delivery for one account: claim, connect once, send, record, repeat."""

    def __init__(self, account: EmailAccount, settings: ConnectionSettings) -> None:
        config = current_app.config
        self.account = account
        self.account_id = account.id
        self.from_email = account.from_email
        self.from_name = account.from_name
        self.settings = settings
        self.lease_seconds = config["MAIL_LEASE_SECONDS"]
        # The longest a message may wait, once ended, for the server's answer and its mark;
        # the message on the wire is held at least that long.
        self.answer_seconds = config["SMTP_TIMEOUT_SECONDS"] + MARK_SECONDS
        self.held_seconds = max(self.lease_seconds, self.answer_seconds)
        self.batch_size = config["MAIL_BATCH_SIZE"]
        self.max_attempts = config["MAIL_MAX_ATTEMPTS"]
        self.retry_base = config["MAIL_RETRY_BASE_SECONDS"]
        self.retry_cap = config["MAIL_RETRY_MAX_SECONDS"]
        self.deadline = time.monotonic() + config["MAIL_JOB_SECONDS"]
        self.connection: Transport | None = None
        self.templates: dict[int, SendTemplate | str] = {}
        self.sends: set[int] = set()
        self.stopped = False  # the account was paused, or its server cannot be reached
        self.pause_answer = ""
        self.reservation: limits.Reservation | None = None  # what the message on the wire counts
        self.places: limits.Places | None = None  # room reserved for the next messages
        self.places_wanted = 1  # how many to reserve next: grows while they are used up fast
        self.places_reserved_at = 0.0
        self.held_until: datetime | None = None  # the provider asked us to wait until then
        self.proven = not health.needs_success_record(account)  # the status shows it works

    @classmethod
    def prepare(cls, account: EmailAccount) -> Delivery | None:
        """A delivery for the account; None (and the account paused) when its stored password
        cannot be read."""
        try:
            settings = resolution.connection_settings(account)
        except crypto.SecretUnreadable:
            health.delivery_paused(
                account.id,
                "The stored password cannot be decrypted with the configured keys.",
                "Enter the account's password again, or put the old key back in "
                "LAMPLIGHT_MAIL_KEYS (after the new one) and run `flask keys rotate`.",
            )
            return None
        return cls(account, settings)

    @property
    def out_of_time(self) -> bool:
        """Time to hand over: the job had its share of the worker, or the worker is stopping."""
        return time.monotonic() >= self.deadline or stop_requested.is_set()

    def run(self, slot: limits.ConnectionSlot) -> bool:
        """Deliver batch after batch; True when it stopped for time rather than for want of
        due work (or because the account cannot send)."""
        owner = _owner()
        self.lease = Lease(self.account_id, owner, self.lease_seconds)
        self.recorder = Recorder(self.account_id, owner)
        try:
            while not self.stopped:
                if self.out_of_time:
                    return True
                batch = self.lease.claim(self.batch_size)
                if not batch:
                    return False
                if len(batch) == self.batch_size:
                    # There may be more: let another connection join, up to the cap.
                    outbox.enqueue_delivery(self.account_id)
                self.sends.update(message.send_id for message in batch)
                try:
                    self._send_batch(self._without_unsubscribed(batch), slot)
                finally:
                    # Places are only for claimed messages (a rebuild after a Redis loss counts
                    # those): none is kept past its batch.
                    self._give_back_places()
            return False
        finally:
            self._disconnect()
            self.recorder.close()
            self.lease.finish_sends(self.sends)
            self.lease.close()

    def _without_unsubscribed(self, batch: list[Claimed]) -> list[Claimed]:
        """The batch less anyone on the do-not-email list by now: people unsubscribe while a
        large send drains, and compose could only leave out who was listed then."""
        listed = suppressions.listed(message.recipient_email for message in batch)
        db.session.commit()  # ends the read: no transaction stays open during SMTP
        keep = []
        for message in batch:
            if message.recipient_email.lower() in listed:
                self.lease.record(message, _UNSUBSCRIBED)
            else:
                keep.append(message)
        return keep

    def _send_batch(self, batch: list[Claimed], slot: limits.ConnectionSlot) -> None:
        held = {message.id for message in batch}
        for index, message in enumerate(batch):
            if message.id not in held:
                continue
            rest = partial(_still_held, batch, index, held)
            try:
                if self.lease.due_for_check:
                    held &= self.lease.renew(m.id for m in rest())
                    if message.id not in held:
                        continue
                # Renewed on its own clock, not the lease's: claims push the lease's check out,
                # and a slot that lapsed while this connection sends would let one more open.
                if not slot.renew_if_due():
                    self.stopped = True  # the slot lapsed: another connection has it
            except redis.RedisError as error:
                self._limiter_lost(error, rest())
                return
            if self.stopped or self.out_of_time:
                self.lease.give_back(rest())
                return
            # Connected before the limiter is asked, so that the message goes right after its
            # reservation: the windows hold what the server receives, however long connecting
            # took.
            if self.connection is None and not self._connect(rest()):
                return
            try:
                refusal = self._may_send(len(rest()))
            except redis.RedisError as error:
                self._limiter_lost(error, rest())
                return
            if refusal is not None:
                self._defer(rest(), *refusal)
                return
            try:
                outcome = self._attempt(message)
            except _TakenOver:
                # Dropped before its end (the server discards it): another job has it now.
                self._refund()
                self._disconnect()
                held.discard(message.id)
                continue
            if outcome is None:  # the account was paused or held by this answer
                self._hold(rest())
                return
            self.recorder.record(message, outcome)

    def _limiter_lost(self, error: redis.RedisError, rest: list[Claimed]) -> None:
        """Without the limiter nothing goes: the untried messages go back, due now, and the
        sweep starts a job for them once Redis is back."""
        log.warning("account %s: the limiter cannot be reached: %s", self.account_id, error)
        self.stopped = True
        self.lease.give_back(rest)

    def _may_send(self, waiting: int) -> tuple[datetime, str] | None:
        """The one place a delivery asks "may this message go now?": None for yes (with the
        message's place in the account's windows taken), else the moment to ask again and
        why. `waiting`: this message and those after it in the batch, for which places may be
        reserved ahead. The account's connections are capped by the limiter's slot (see
        deliver)."""
        self.reservation = self.places.take() if self.places is not None else None
        if self.reservation is not None:
            return None
        self._give_back_places()
        decision = limits.reserve(self.account, min(waiting, self.places_wanted))
        if not decision.allowed:
            if decision.not_before is None:  # TOO_MANY_RECIPIENTS: no moment would do
                return (
                    decision.now + NO_ALLOWANCE_RETRY,
                    "The account's daily limit leaves no room.",
                )
            return decision.not_before, _WAITING_FOR[decision.refusal]
        self.places, self.places_reserved_at = decision.places, time.monotonic()
        self.reservation = self.places.take()
        if self.reservation is None:
            # The limiter took longer to answer than places may wait: nothing is sent unmetered.
            raise redis.TimeoutError("the limiter answered too late for its places to be used")
        return None

    def _give_back_places(self) -> None:
        """Give back the places reserved and not taken, and size the next reservation: twice
        as many while they are used up within half their time, else as many as were used."""
        places, self.places = self.places, None
        if places is None:
            return
        quick = time.monotonic() - self.places_reserved_at < limits.PLACES_SECONDS / 2
        if places.taken == places.count and quick:
            self.places_wanted = min(2 * places.count, limits.PLACES_AHEAD)
        else:
            self.places_wanted = max(1, places.taken)
        try:
            places.give_back()
        except redis.RedisError as error:
            # Counting too much errs on the safe side.
            log.warning("account %s: the limiter cannot be reached: %s", self.account_id, error)

    def _refund(self) -> None:
        """Give back the room counted for the message that did not go."""
        reservation, self.reservation = self.reservation, None
        if reservation is None:
            return
        try:
            limits.refund(reservation)
        except redis.RedisError as error:
            # Counting too much errs on the safe side.
            log.warning("account %s: the limiter cannot be reached: %s", self.account_id, error)

    def _defer(self, rest: list[Claimed], due_at: datetime, why: str) -> None:
        """Give the untried messages back, due at `due_at` with no attempt counted, and have a
        job start then."""
        self.lease.give_back(rest, status=MessageStatus.DEFERRED, due_at=due_at, answer=why)
        try:
            outbox.schedule_delivery(self.account_id, due_at)
        except redis.RedisError as error:
            log.warning("account %s: no wake-up scheduled: %s", self.account_id, error)

    def _not_accepted(self, failure: Answer) -> bool:
        """The server did not take the message on the wire: give back what it counted, and
        when the answer says the provider's own quota or rate was reached, hold the account.
        True when held (the message and the rest then wait, no attempt counted)."""
        if failure.kind == AnswerKind.UNKNOWN:
            self.reservation = None  # the message may have gone: it stays counted
        else:
            self._refund()
        try:
            if failure.retry_after is not None:
                # The service named the wait itself (Graph's Retry-After): the account waits.
                self.held_until = limits.slow_down(self.account, failure.retry_after)
            else:
                self.held_until = limits.hold_for_answer(self.account, failure.code, failure.text)
        except redis.RedisError as error:
            # Then a quota answer pauses the account instead.
            log.warning("account %s: the limiter cannot be reached: %s", self.account_id, error)
        if self.held_until is None:
            return False
        self.pause_answer = str(failure)
        self.stopped = True
        if failure.retry_after is None:
            # A provider quota: the account waits rather than pauses, and its status says why,
            # with the advice (a Retry-After is pacing, not a failure).
            health.delivery_failed(self.account_id, str(failure), failure.hint)
        return True

    def _connect(self, rest: list[Claimed]) -> bool:
        try:
            self.connection = open_transport(self.settings)
        except TransportFailure as error:
            log.warning("account %s: cannot connect: %s", self.account_id, error)
            failure = error.answer
            if self._not_accepted(failure):
                self._hold(rest)
            elif failure.kind == AnswerKind.PAUSE_ACCOUNT:
                self._pause(failure)
                self._hold(rest)
            else:
                # The server is down or refusing: every message waiting on it counts a try, so
                # an account whose server never comes back ends in failures, not a loop.
                health.delivery_failed(self.account_id, str(failure), failure.hint)
                for message in rest:
                    self.lease.record(message, self._retry_or_fail(message, failure))
                self.stopped = True
            return False
        return True

    def _attempt(self, message: Claimed) -> Outcome | None:
        """Send one message on the open connection; None when the answer paused the account."""
        template = self._template(message.send_id)
        if isinstance(template, str):
            return self._unbuildable(template)
        try:
            payload = template.render(
                message.recipient_email,
                message.recipient_name,
                message.message_id_header,
                message.merge_values,
                message.unsubscribe_token,
            )
        except Exception as error:
            # Whatever the data holds, one message that cannot be built fails alone.
            return self._unbuildable(_reason(error))
        assert self.connection is not None
        started, waited = time.monotonic(), 0.0

        def previous_marked() -> None:
            # The previous message is marked before this one can be accepted; the wait is ours,
            # not the server's, so it is left out of the latency.
            nonlocal waited
            began = time.monotonic()
            self.recorder.wait()
            # After a long wait (the database away) the message may have been taken over:
            # then it must not be ended here as well. Once ended, it stays ours until its mark
            # is written, however long the server takes to answer: a lease that lapsed
            # meanwhile would let another worker send it again.
            recheck = self.lease.due_for_check or not self.lease.lasts(self.answer_seconds)
            if recheck and not self.lease.keep(message.id, self.held_seconds):
                raise _TakenOver
            waited = time.monotonic() - began

        answer = self.connection.deliver(
            self.from_email,
            [message.recipient_email],
            payload,
            before_acceptance=previous_marked,
        )
        if answer.accepted:
            outcome = Outcome(MessageStatus.SENT, str(answer), answer.code)
            if not self.proven:
                self.proven = True
                health.delivered(self.account_id, str(answer))
        else:
            outcome = self._after_failure(message, answer)
            if outcome is None or answer.code is None:
                return outcome  # paused, or the server never answered: nothing to time
        return replace(outcome, seconds=time.monotonic() - started - waited)

    def _unbuildable(self, why: str) -> Outcome:
        self._refund()  # it never went
        return Outcome(MessageStatus.FAILED, f"The message could not be built: {why}")

    def _after_failure(self, message: Claimed, failure: Answer) -> Outcome | None:
        if failure.code is None or failure.code == 421:
            # The connection is gone (or the server is closing it): reconnect for the next one.
            self._disconnect()
        if self._not_accepted(failure):
            return None
        if failure.kind == AnswerKind.PAUSE_ACCOUNT:
            self._pause(failure)
            return None
        if failure.kind == AnswerKind.UNKNOWN:
            return Outcome(
                MessageStatus.FAILED,
                f"Outcome unknown: {failure!s}. The server may have accepted the message "
                "before the connection failed, so it is not sent again automatically.",
                failure.code,
                may_have_arrived=True,
            )
        if failure.kind == AnswerKind.TEMPORARY:
            return self._retry_or_fail(message, failure)
        return Outcome(MessageStatus.FAILED, str(failure), failure.code)

    def _retry_or_fail(self, message: Claimed, failure: Answer) -> Outcome:
        if message.attempts >= self.max_attempts:
            return Outcome(
                MessageStatus.FAILED,
                f"{failure!s} (gave up after {message.attempts} attempts)",
                failure.code,
            )
        due_at = utcnow() + backoff(message.attempts, self.retry_base, self.retry_cap)
        return Outcome(MessageStatus.DEFERRED, str(failure), failure.code, due_at)

    def _pause(self, failure: Answer) -> None:
        health.delivery_paused(self.account_id, str(failure), failure.hint)
        self.pause_answer = str(failure)
        self.stopped = True

    def _hold(self, rest: list[Claimed]) -> None:
        """Keep the messages untried: until the provider's hold ends, or until an admin resumes
        the paused account."""
        if self.held_until is not None:
            self._defer(rest, self.held_until, f"Waiting, as the server asked: {self.pause_answer}")
            return
        self.lease.give_back(
            rest,
            status=MessageStatus.DEFERRED,
            answer=f"Held while the account is paused: {self.pause_answer}",
        )

    def _template(self, send_id: int) -> SendTemplate | str:
        """The send's message, built once per job (or why it cannot be built)."""
        if send_id not in self.templates:
            send = db.session.get(Send, send_id)
            try:
                self.templates[send_id] = SendTemplate(
                    from_email=self.from_email,
                    from_name=self.from_name,
                    subject=send.subject,
                    body_text=send.body_text,
                    body_html=send.body_html,
                    reply_to=send.reply_to,
                    attachments=[
                        AttachedFile(a.filename, a.content_type, a.data) for a in send.attachments
                    ],
                    unsubscribe_base=send.unsubscribe_base,
                )
            except Exception as error:
                # A send whose message cannot be built fails message by message with the
                # reason; the batch, the job and the account's other mail go on.
                self.templates[send_id] = _reason(error)
            finally:
                db.session.commit()  # ends the read: no transaction stays open during SMTP
        return self.templates[send_id]

    def _disconnect(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class _TakenOver(Exception):
    """The message on the wire is no longer this job's to end."""


_UNSUBSCRIBED = Outcome(
    MessageStatus.CANCELLED, "Not sent: the address is on the do-not-email list."
)

_WAITING_FOR = {
    limits.Refusal.DAILY: "Waiting for room in the account's daily limit.",
    limits.Refusal.MINUTE: "Paced to the account's messages per minute.",
    limits.Refusal.HELD: "Waiting: the provider asked for a pause in sending.",
    limits.Refusal.REBUILDING: "Waiting for the sending limits to be restored.",
}


def _reason(error: Exception) -> str:
    """Why a message could not be built, for the message's record: the builder's own words, or
    the error's type when it is not one of ours (logged in full)."""
    if isinstance(error, HeaderInjection):
        return str(error)
    log.exception("a message could not be built")
    return f"{type(error).__name__}: {error}"


def _still_held(batch: list[Claimed], index: int, held: set[int]) -> list[Claimed]:
    """The batch from `index` on, without the messages this job no longer holds."""
    return [message for message in batch[index:] if message.id in held]
