"""The outbox: a send and one message row per recipient are committed to the database first;
only then is a wake-up put on RQ.

The database is the source of truth and Redis only transport: a job names an account id and
nothing else, and the periodic sweep re-enqueues any due work whose job was lost (or never made
it to Redis), so mail is never lost to a Redis outage.
"""

from __future__ import annotations

import logging
import math
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import redis
from flask import current_app
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import func, insert, select, update

from lamplight_mail import attachments as attachment_store
from lamplight_mail import audit, suppressions
from lamplight_mail.delivery import limits
from lamplight_mail.delivery.mime import new_message_id
from lamplight_mail.delivery.transactions import write_transaction
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import (
    Attachment,
    EmailAccount,
    Message,
    MessageStatus,
    Send,
    SendStatus,
    User,
    utcnow,
)
from lamplight_mail.wording import plural

log = logging.getLogger(__name__)

DELIVER_JOB = "lamplight_mail.delivery.job.deliver"
# Messages still to be delivered; everything else is final.
OPEN_STATUSES = (
    MessageStatus.PENDING,
    MessageStatus.QUEUED,
    MessageStatus.DEFERRED,
    MessageStatus.SENDING,
)
# Sends whose messages a worker may claim: never a flagged (held) or cancelled one.
ACTIVE_SEND_STATUSES = (SendStatus.QUEUED, SendStatus.SENDING)
# "A job for this account is waiting on the queue" (its id), so composing ten sends in a row
# queues one wake-up, not ten. It expires, so a marker whose job vanished cannot block forever.
WAITING_JOB_KEY = "lamplight:delivery:waiting:{account_id}"
WAITING_JOB_TTL_SECONDS = 600
# The moment (unix seconds) of the account's next scheduled wake-up, expiring then.
WAKE_UP_KEY = "lamplight:delivery:wake:{account_id}"
SWEEP_LOCK_KEY = "lamplight:delivery:sweep"
# Jobs carry ids only, as JSON: with RQ's default (pickle), whoever can write to Redis could make
# every worker run code of their choosing. The worker reads jobs with the same serializer.
JOB_SERIALIZER = JSONSerializer
WAITING_STATES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})


class RecipientLike(Protocol):
    email: str
    name: str


@dataclass(frozen=True)
class Extras:
    """What a send may carry beyond its text (compose's optional fields)."""

    reply_to: str | None = None
    send_at: datetime | None = None  # naive UTC; None: now
    unsubscribe_base: str | None = None  # links are this plus each message's token
    attachments: Sequence[Attachment] = ()  # held uploads, bound to the send
    merge_columns: frozenset[str] = frozenset()  # the CSV columns the text uses


class SendStateError(ValueError):
    """The send is not in a state that allows this (e.g. releasing a send that is not flagged)."""


def mail_queue() -> Queue:
    return Queue(
        current_app.config["MAIL_QUEUE_NAME"], connection=get_redis(), serializer=JOB_SERIALIZER
    )


def create_send(
    user: User,
    account: EmailAccount,
    recipients: Sequence[RecipientLike],
    subject: str,
    body_text: str,
    body_html: str | None = None,
    flag_reason: str | None = None,
    extras: Extras | None = None,
) -> Send:
    """Write the send and one message per recipient in one transaction, commit, then enqueue
    delivery (ids only). Messages are `queued`: waiting for a worker, whether or not Redis took
    the job (the sweep enqueues one when it did not). With `flag_reason` the send is held as
    flagged, its messages `pending` until an admin releases it, and nothing is enqueued; with
    a `send_at` it is `scheduled`, its messages `pending` until the sweep finds it due."""
    now = utcnow()
    extras = extras or Extras()
    with write_transaction():
        send = _write_send(
            user, account, recipients, now, subject, body_text, body_html, flag_reason, extras
        )
    if send.status == SendStatus.QUEUED:
        enqueue_delivery(send.account_id)
    return send


def _write_send(
    user: User,
    account: EmailAccount,
    recipients: Sequence[RecipientLike],
    now: datetime,
    subject: str,
    body_text: str,
    body_html: str | None,
    flag_reason: str | None,
    extras: Extras,
) -> Send:
    if flag_reason:
        status = SendStatus.FLAGGED
    elif extras.send_at is not None:
        status = SendStatus.SCHEDULED
    else:
        status = SendStatus.QUEUED
    send = Send(
        user_id=user.id,
        account_id=account.id,
        subject=subject,
        body_text=body_text,
        body_html=body_html or None,
        status=status,
        recipient_count=len(recipients),
        flag_reason=flag_reason,
        reply_to=extras.reply_to or None,
        send_at=extras.send_at,
        unsubscribe_base=extras.unsubscribe_base,
        created_at=now,
    )
    db.session.add(send)
    db.session.flush()
    attachment_store.bind(extras.attachments, send)
    columns = sorted(extras.merge_columns)
    # One executemany (multi-row VALUES on PostgreSQL) with every value given, so no per-row
    # default runs. The Message-ID is fixed now so a retried message keeps its identity.
    rows = [
        {
            "send_id": send.id,
            "account_id": account.id,
            "recipient_email": recipient.email,
            "recipient_name": recipient.name,
            "message_id_header": new_message_id(account.from_email),
            "status": MessageStatus.QUEUED
            if status == SendStatus.QUEUED
            else MessageStatus.PENDING,
            "attempts": 0,
            "due_at": extras.send_at or now,
            # Only the columns the message uses, so a wide spreadsheet is not copied whole.
            "merge_values": (
                {column: recipient.fields.get(column, "") for column in columns}
                if columns
                else None
            ),
            "unsubscribe_token": secrets.token_urlsafe(24) if extras.unsubscribe_base else None,
            "created_at": now,
            "updated_at": now,
        }
        for recipient in recipients
    ]
    if rows:
        # Core, not the ORM's bulk insert: no identity bookkeeping for rows nobody will touch.
        db.session.execute(insert(Message.__table__), rows)
    return send


def flag_reason(account: EmailAccount, recipient_count: int) -> str | None:
    """Why a send should wait for an admin before it goes (limits.flag_reason), or None.

    The allowance lives in Redis: when Redis cannot be reached the send is accepted unflagged,
    as promised for a Redis outage, and the worker's limits still apply when it goes.
    """
    try:
        return limits.flag_reason(account, recipient_count)
    except redis.RedisError as error:
        log.warning("could not check account %s's allowance: %s", account.id, error)
        return None


def release(send: Send, actor: User) -> None:
    """An admin lets a flagged send go: it is queued and delivery enqueued, or, when its
    send_at is still to come, scheduled (commits). Anyone put on the do-not-email list since
    it was composed is left out."""
    suppressions.leave_out(send.id)
    with write_transaction():
        # Checked under the lock, so two admins releasing at once release it once.
        db.session.refresh(send, with_for_update=True)
        if send.status != SendStatus.FLAGGED:
            raise SendStateError("Only a flagged send can be released.")
        now = utcnow()
        send.released_at = now
        send.released_by_id = actor.id
        if send.send_at is not None and send.send_at > now:
            send.status = SendStatus.SCHEDULED  # its messages wait, pending, until then
        else:
            send.status = SendStatus.QUEUED
            queue_pending(send.id, now)
        audit.record(
            "send.released",
            "send",
            send.id,
            f"Released send {send.id} ({plural(send.recipient_count, 'recipient')}, "
            f"“{send.subject}”) "
            f"through {send.account.label}",
            {"recipients": send.recipient_count, "flag_reason": send.flag_reason},
            actor=actor,
        )
    if send.status == SendStatus.QUEUED:
        enqueue_delivery(send.account_id)


def queue_pending(send_id: int, now: datetime) -> None:
    """The send's pending messages become queued, due now (in the caller's transaction)."""
    db.session.execute(
        update(Message)
        .where(Message.send_id == send_id, Message.status == MessageStatus.PENDING)
        .values(status=MessageStatus.QUEUED, due_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def cancel(send: Send, actor: User) -> int:
    """Cancel the send and every message not yet sent; return how many were cancelled (commits).

    A message a worker has on the wire right now may still be accepted by the server: the worker
    then records it as sent (it was), and sends nothing more of this send.
    """
    with write_transaction():
        db.session.refresh(send, with_for_update=True)
        if send.status in (SendStatus.DONE, SendStatus.CANCELLED):
            raise SendStateError(f"This send is already {send.status.value}.")
        now = utcnow()
        cancelled = db.session.execute(
            update(Message)
            .where(Message.send_id == send.id, Message.status.in_(OPEN_STATUSES))
            # A deferral's reason ("Paced to ...") would read as why it was cancelled.
            .values(
                status=MessageStatus.CANCELLED,
                updated_at=now,
                last_response=f"Cancelled by {actor.name} before it was sent.",
                last_code=None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        previous = send.status
        send.status = SendStatus.CANCELLED
        send.finished_at = now
        audit.record(
            "send.cancelled",
            "send",
            send.id,
            f"Cancelled send {send.id} (“{send.subject}”): {plural(cancelled, 'message')} not sent",
            {"was": previous.value, "cancelled_messages": cancelled},
            actor=actor,
        )
    return cancelled


def enqueue_delivery(account_id: int, *, verify: bool = False) -> bool:
    """Make sure a delivery job for the account waits on the queue. With `verify`, a waiting
    marker whose job no longer waits is replaced. False when Redis cannot be reached."""
    connection = get_redis()
    key = WAITING_JOB_KEY.format(account_id=account_id)
    try:
        if verify and not _job_waiting(connection, key):
            connection.delete(key)
        job_id = f"deliver-{account_id}-{uuid.uuid4().hex}"
        if not connection.set(key, job_id, nx=True, ex=WAITING_JOB_TTL_SECONDS):
            return True  # a job is already waiting; it will find the new messages
        mail_queue().enqueue(DELIVER_JOB, account_id, job_id=job_id, **_job_options(account_id))
    except redis.RedisError as error:
        log.warning("could not enqueue delivery for account %s: %s", account_id, error)
        return False
    return True


def schedule_delivery(account_id: int, moment: datetime) -> None:
    """Have a delivery job start for the account at `moment` (naive UTC), when its deferred
    mail falls due, through RQ's scheduler: no worker sleeps on it. One wake-up per account and
    moment: the many refusals of one busy account schedule one job, not one each. Raises
    redis.RedisError (the sweep finds the mail anyway once it is due)."""
    connection = get_redis()
    # RQ's scheduler keeps whole seconds; rounding up means the job never starts early.
    at = math.ceil(moment.replace(tzinfo=UTC).timestamp())
    key = WAKE_UP_KEY.format(account_id=account_id)
    scheduled = connection.get(key)
    if scheduled is not None and int(scheduled) <= at:
        return  # an earlier (or this) wake-up is coming: it finds this mail due too
    # Gone once due: the job then running may need the next wake-up, a few seconds on.
    connection.set(key, at, exat=at)
    mail_queue().enqueue_at(
        datetime.fromtimestamp(at, UTC),
        DELIVER_JOB,
        account_id,
        job_id=f"deliver-{account_id}-at-{at}",
        **_job_options(account_id),
    )


def _job_options(account_id: int) -> dict:
    config = current_app.config
    return {
        # The job stops claiming after MAIL_JOB_SECONDS; the margin covers the last batch.
        "job_timeout": int(config["MAIL_JOB_SECONDS"] + config["MAIL_LEASE_SECONDS"] * 4),
        "result_ttl": 0,
        "failure_ttl": 7 * 24 * 3600,
        "description": f"deliver mail for account {account_id}",
    }


def delivery_started(account_id: int) -> None:
    """Called by the job as it starts: from now on new mail needs a new wake-up."""
    get_redis().delete(WAITING_JOB_KEY.format(account_id=account_id))


def _job_waiting(connection: redis.Redis, key: str) -> bool:
    job_id = connection.get(key)
    if job_id is None:
        return False
    try:
        job = Job.fetch(job_id.decode(), connection=connection, serializer=JOB_SERIALIZER)
        return job.get_status() in WAITING_STATES
    except NoSuchJobError:
        return False


def due_accounts() -> list[int]:
    """Accounts (not paused) with messages due now in a send that may be delivered."""
    now = utcnow()
    query = (
        select(Message.account_id)
        .join(Send, Send.id == Message.send_id)
        .join(EmailAccount, EmailAccount.id == Message.account_id)
        .where(
            Message.status.in_(OPEN_STATUSES),
            Message.due_at <= now,
            Send.status.in_(ACTIVE_SEND_STATUSES),
            EmailAccount.paused_at.is_(None),
        )
        .distinct()
    )
    return list(db.session.scalars(query))


def sweep(*, force: bool = False) -> list[int]:
    """Enqueue delivery wherever due work has no waiting job: lost or evicted jobs, mail composed
    while Redis was down, deferred retries now due, leases of dead workers, resumed accounts.

    Several workers call this; unless `force`d, only one sweeps per MAIL_SWEEP_SECONDS.
    Returns the accounts it enqueued.
    """
    interval = current_app.config["MAIL_SWEEP_SECONDS"]
    acquired = get_redis().set(SWEEP_LOCK_KEY, 1, nx=True, px=int(interval * 900))
    if not (acquired or force):
        return []
    return [
        account_id for account_id in due_accounts() if enqueue_delivery(account_id, verify=True)
    ]


def open_count(send_id: int) -> int:
    """How many of the send's messages have not gone yet (what cancelling would stop)."""
    return db.session.scalar(
        select(func.count()).where(Message.send_id == send_id, Message.status.in_(OPEN_STATUSES))
    )


def counts_by_send(send_ids: Sequence[int]) -> dict[int, dict[MessageStatus, int]]:
    """For each send, how many of its messages are in each state (every state, zeros too)."""
    counts = {send_id: dict.fromkeys(MessageStatus, 0) for send_id in send_ids}
    if send_ids:
        rows = db.session.execute(
            select(Message.send_id, Message.status, func.count())
            .where(Message.send_id.in_(send_ids))
            .group_by(Message.send_id, Message.status)
        )
        for send_id, status, count in rows:
            counts[send_id][status] = count
    return counts
