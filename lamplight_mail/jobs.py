"""What the worker runs: deliver one account's due messages over one SMTP connection.

A job carries an account id and nothing else. It claims a batch of due messages with a lease,
connects once (STARTTLS or TLS, AUTH), sends each message on that connection and records its
outcome right after the server answers, then claims the next batch, until nothing is due or the
job has had its share of the worker. Up to the account's connection cap of these jobs run at
once, across every worker.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial

from flask import current_app
from redis.commands.core import Script

from lamplight_mail import accounts, crypto, outbox, smtp
from lamplight_mail.claims import Claimed, Lease, Outcome, finish_sends
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.messages import HeaderInjection
from lamplight_mail.models import EmailAccount, MessageStatus, Send, utcnow
from lamplight_mail.providers import AnswerKind
from lamplight_mail.rendering import SendTemplate

log = logging.getLogger(__name__)


def deliver(account_id: int) -> None:
    """The RQ job: deliver what is due for the account, then hand over to a fresh job if time
    ran out with work left."""
    outbox.delivery_started(account_id)
    try:
        delivery = Delivery.prepare(account_id)
        if delivery is None:
            return
        with delivery.gate.connection() as slot:
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

    def __init__(self, account: EmailAccount, settings: smtp.ConnectionSettings) -> None:
        config = current_app.config
        self.account_id = account.id
        self.from_email = account.from_email
        self.from_name = account.from_name
        self.settings = settings
        self.lease = Lease(account.id, _owner(), config["MAIL_LEASE_SECONDS"])
        self.batch_size = config["MAIL_BATCH_SIZE"]
        self.max_attempts = config["MAIL_MAX_ATTEMPTS"]
        self.retry_base = config["MAIL_RETRY_BASE_SECONDS"]
        self.retry_cap = config["MAIL_RETRY_MAX_SECONDS"]
        self.deadline = time.monotonic() + config["MAIL_JOB_SECONDS"]
        self.gate = Gate(account.id, account.connection_cap, config["MAIL_LEASE_SECONDS"])
        self.connection: smtp.Connection | None = None
        self.templates: dict[int, SendTemplate | str] = {}
        self.sends: set[int] = set()
        self.stopped = False  # the account was paused, or its server cannot be reached
        self.pause_answer = ""

    @classmethod
    def prepare(cls, account_id: int) -> Delivery | None:
        """A delivery for the account; None when it is gone or paused, or (pausing it) when its
        stored password cannot be read. Leaves no transaction open."""
        account = db.session.get(EmailAccount, account_id)
        if account is None or account.paused_at is not None:
            db.session.rollback()
            return None
        try:
            settings = accounts.connection_settings(account)
        except crypto.SecretUnreadable:
            accounts.pause(
                account,
                "The stored password cannot be decrypted with the configured keys.",
                "Enter the account's password again, or put the old key back in "
                "LAMPLIGHT_MAIL_KEYS (after the new one) and run `flask keys rotate`.",
            )
            db.session.commit()
            return None
        delivery = cls(account, settings)
        db.session.commit()
        return delivery

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def run(self, slot: ConnectionSlot) -> bool:
        """Deliver batch after batch; True when it stopped for time rather than for want of
        due work (or because the account cannot send)."""
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
                self._send_batch(batch, slot)
            return False
        finally:
            self._disconnect()
            finish_sends(self.sends)

    def _send_batch(self, batch: list[Claimed], slot: ConnectionSlot) -> None:
        held = {message.id for message in batch}
        for index, message in enumerate(batch):
            if message.id not in held:
                continue
            rest = partial(_still_held, batch, index, held)
            if self.lease.expiring:
                held &= self.lease.renew(m.id for m in rest())
                if not slot.renew():
                    self.stopped = True  # the slot lapsed: another connection has it
                if message.id not in held:
                    continue
            if self.stopped or self.out_of_time:
                self.lease.give_back(rest())
                return
            not_before = self.gate.may_send(message)
            if not_before is not None:
                self.lease.give_back(rest(), status=MessageStatus.DEFERRED, due_at=not_before)
                return
            if self.connection is None and not self._connect(rest()):
                return
            outcome = self._attempt(message)
            if outcome is None:  # the account was paused by this answer
                self._hold(rest())
                return
            following = next((m.id for m in batch[index + 1 :] if m.id in held), None)
            if not self.lease.record(message, outcome, then=following):
                held &= self.lease.held(m.id for m in batch[index + 1 :])

    def _connect(self, rest: list[Claimed]) -> bool:
        try:
            self.connection = smtp.connect(self.settings)
        except smtp.SMTPFailure as failure:
            log.warning("account %s: cannot connect: %s", self.account_id, failure)
            if failure.kind == AnswerKind.PAUSE_ACCOUNT:
                self._pause(failure)
                self._hold(rest)
            else:
                # The server is down or refusing: every message waiting on it counts a try, so
                # an account whose server never comes back ends in failures, not a loop.
                for message in rest:
                    self.lease.record(message, self._retry_or_fail(message, failure))
                self.stopped = True
            return False
        return True

    def _attempt(self, message: Claimed) -> Outcome | None:
        """Send one message on the open connection; None when the answer paused the account."""
        template = self._template(message.send_id)
        if isinstance(template, str):
            return Outcome(MessageStatus.FAILED, f"The message could not be built: {template}")
        try:
            payload = template.render(
                message.recipient_email, message.recipient_name, message.message_id_header
            )
        except (HeaderInjection, UnicodeError) as error:
            return Outcome(MessageStatus.FAILED, f"The message could not be built: {error}")
        assert self.connection is not None
        try:
            answer = self.connection.deliver(self.from_email, [message.recipient_email], payload)
        except smtp.SMTPFailure as failure:
            return self._after_failure(message, failure)
        return Outcome(MessageStatus.SENT, answer, 250)

    def _after_failure(self, message: Claimed, failure: smtp.SMTPFailure) -> Outcome | None:
        if failure.code is None or failure.code == 421:
            # The connection is gone (or the server is closing it): reconnect for the next one.
            self._disconnect()
        if failure.kind == AnswerKind.PAUSE_ACCOUNT:
            self._pause(failure)
            return None
        if failure.kind == AnswerKind.UNKNOWN:
            return Outcome(
                MessageStatus.FAILED,
                f"Outcome unknown: {_answer(failure)}. The server may have accepted the message "
                "before the connection failed, so it is not sent again automatically.",
                failure.code,
            )
        if failure.kind == AnswerKind.TEMPORARY:
            return self._retry_or_fail(message, failure)
        return Outcome(MessageStatus.FAILED, _answer(failure), failure.code)

    def _retry_or_fail(self, message: Claimed, failure: smtp.SMTPFailure) -> Outcome:
        if message.attempts >= self.max_attempts:
            return Outcome(
                MessageStatus.FAILED,
                f"{_answer(failure)} (gave up after {message.attempts} attempts)",
                failure.code,
            )
        due_at = utcnow() + backoff(message.attempts, self.retry_base, self.retry_cap)
        return Outcome(MessageStatus.DEFERRED, _answer(failure), failure.code, due_at)

    def _pause(self, failure: smtp.SMTPFailure) -> None:
        account = db.session.get(EmailAccount, self.account_id)
        accounts.pause(account, _answer(failure), failure.hint)
        db.session.commit()
        self.pause_answer = _answer(failure)
        self.stopped = True

    def _hold(self, rest: list[Claimed]) -> None:
        """Keep the paused account's messages, untried, until an admin resumes it."""
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
                )
            except HeaderInjection as error:
                self.templates[send_id] = str(error)
            finally:
                db.session.commit()  # ends the read: no transaction stays open during SMTP
        return self.templates[send_id]

    def _disconnect(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _still_held(batch: list[Claimed], index: int, held: set[int]) -> list[Claimed]:
    """The batch from `index` on, without the messages this job no longer holds."""
    return [message for message in batch[index:] if message.id in held]


def _answer(failure: smtp.SMTPFailure) -> str:
    return f"{failure.code} {failure.answer}" if failure.code else failure.answer


# --- The seam with the limiter -------------------------------------------------------------
#
# Every "may I?" a delivery asks goes through Gate: one connection slot per SMTP connection,
# and one question per message. Until limits.py is wired in, connections are capped by a small
# Redis semaphore and every message may go at once (no pacing).

# KEYS[1] the account's connection slots: a sorted set of token -> lease end (ms, Redis time)
# ARGV[1] the connection cap, ARGV[2] this connection's token, ARGV[3] lease length (ms)
# Returns 1 when the token holds a slot (taken or renewed), 0 when the cap is reached.
_SLOT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""
_slot_script: Script | None = None


class ConnectionSlot:
    """One of an account's concurrent SMTP connections, a lease that lapses if its worker dies."""

    def __init__(self, account_id: int, cap: int, lease_seconds: float) -> None:
        global _slot_script
        self._client = get_redis()
        if _slot_script is None:
            _slot_script = self._client.register_script(_SLOT_SCRIPT)
        self._script = _slot_script
        self._args = [cap, uuid.uuid4().hex, int(lease_seconds * 1000)]
        self._key = f"lamplight:connections:{account_id}"

    def renew(self) -> bool:
        """Take or extend the slot; False when the cap is reached (or the slot lapsed and went
        to another connection)."""
        return bool(self._script(keys=[self._key], args=self._args, client=self._client))

    def release(self) -> None:
        self._client.zrem(self._key, self._args[1])


class Gate:
    """Where a delivery asks the limiter for permission."""

    def __init__(self, account_id: int, connection_cap: int, lease_seconds: float) -> None:
        self.account_id = account_id
        self.connection_cap = connection_cap
        self.lease_seconds = lease_seconds

    @contextmanager
    def connection(self) -> Iterator[ConnectionSlot | None]:
        """A connection slot for the block, or None when the account's cap is reached."""
        slot = ConnectionSlot(self.account_id, self.connection_cap, self.lease_seconds)
        if not slot.renew():
            yield None
            return
        try:
            yield slot
        finally:
            slot.release()

    def may_send(self, message: Claimed) -> datetime | None:
        """None when the message may go now, else the moment to try again."""
        return None
