"""The outbox: what create_send, release, cancel and the sweep leave in the database and on the
real Redis queue."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from lamplight_mail.delivery import outbox, rollups
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountDailyStats,
    AuditEvent,
    Message,
    MessageStatus,
    Role,
    SendStatus,
    utcnow,
)
from lamplight_mail.recipients import Recipient
from tests.factories import make_account, make_user, queued_job_args, statuses

PEOPLE = [Recipient("amy@example.org", "Amy Ng"), Recipient("bo@example.org", "Bo Ørsted")]


def test_create_send_commits_every_message_then_enqueues_one_job_of_ids(ctx):
    user, account = make_user(), make_account()
    send = outbox.create_send(user, account, PEOPLE, "Spring news", "Hello")

    db.session.rollback()
    messages = db.session.scalars(select(Message).where(Message.send_id == send.id)).all()
    assert send.status == SendStatus.QUEUED and send.recipient_count == 2
    assert sorted((m.recipient_email, m.recipient_name) for m in messages) == [
        ("amy@example.org", "Amy Ng"),
        ("bo@example.org", "Bo Ørsted"),
    ]
    assert {m.status for m in messages} == {MessageStatus.QUEUED}
    assert len({m.message_id_header for m in messages}) == 2
    assert all(m.message_id_header.endswith("@charity.example>") for m in messages)
    assert queued_job_args(ctx) == [(account.id,)]

    # A second send for the account rides on the job already waiting.
    outbox.create_send(user, account, PEOPLE[:1], "Again", "Hello")
    assert queued_job_args(ctx) == [(account.id,)]


def test_a_flagged_send_is_held_and_nothing_is_enqueued(ctx):
    user, account = make_user(), make_account()
    send = outbox.create_send(user, account, PEOPLE, "Big", "Hi", flag_reason="Over the limit")
    assert send.status == SendStatus.FLAGGED
    assert statuses(send.id) == {"pending": 2}
    assert queued_job_args(ctx) == []
    # The sweep leaves it alone too: held means held.
    assert outbox.sweep(force=True) == []
    assert statuses(send.id) == {"pending": 2}


def test_release_queues_the_send_enqueues_and_records_who(ctx):
    user, account = make_user(), make_account()
    admin = make_user("ada@charity.example", role=Role.ADMIN)
    send = outbox.create_send(user, account, PEOPLE, "Big", "Hi", flag_reason="Over the limit")

    outbox.release(send, admin)

    db.session.rollback()
    assert send.status == SendStatus.QUEUED
    assert send.released_by_id == admin.id and send.released_at is not None
    assert statuses(send.id) == {"queued": 2}
    assert queued_job_args(ctx) == [(account.id,)]
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "send.released")).one()
    assert (event.actor_email, event.target_id) == ("ada@charity.example", send.id)
    with pytest.raises(outbox.SendStateError):
        outbox.release(send, admin)


def test_cancel_cancels_what_is_not_sent_and_is_audited(ctx):
    user, account = make_user(), make_account()
    admin = make_user("ada@charity.example", role=Role.ADMIN)
    send = outbox.create_send(user, account, [*PEOPLE, Recipient("cy@example.org")], "S", "B")
    first = db.session.scalars(select(Message).where(Message.send_id == send.id)).first()
    first.status, first.sent_at = MessageStatus.SENT, utcnow()
    db.session.commit()

    paced = db.session.scalars(select(Message).where(Message.id != first.id)).first()
    paced.status, paced.last_response = MessageStatus.DEFERRED, "Paced to the account's limit."
    db.session.commit()

    assert outbox.cancel(send, admin) == 2

    db.session.rollback()
    assert send.status == SendStatus.CANCELLED and send.finished_at is not None
    assert statuses(send.id) == {"sent": 1, "cancelled": 2}
    # What the log shows for it says why it did not go, not why it once waited.
    assert db.session.get(Message, paced.id).last_response == (
        f"Cancelled by {admin.name} before it was sent."
    )
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "send.cancelled")
    ).one()
    assert event.details["cancelled_messages"] == 2
    with pytest.raises(outbox.SendStateError):
        outbox.cancel(send, admin)
    # Nothing of a cancelled send is due any more.
    assert outbox.due_accounts() == []


def test_redis_unreachable_at_compose_accepts_and_the_sweep_enqueues_later(ctx, tmp_path):
    user, account = make_user(), make_account()
    working_redis = ctx.config["REDIS_URL"]
    _use_redis(ctx, f"unix://{tmp_path}/nothing-listens-here.sock")

    send = outbox.create_send(user, account, PEOPLE, "While Redis is down", "Hello")

    assert statuses(send.id) == {"queued": 2}  # committed: the mail is not lost
    _use_redis(ctx, working_redis)
    assert queued_job_args(ctx) == []
    assert outbox.sweep(force=True) == [account.id]
    assert queued_job_args(ctx) == [(account.id,)]


def _use_redis(app, url: str) -> None:
    client = app.extensions.get("lamplight_redis")
    if client is not None:
        client.close()
    app.config["REDIS_URL"] = url
    app.extensions["lamplight_redis"] = None


def test_sweep_replaces_a_lost_job_and_skips_paused_accounts(ctx, redis_client):
    user, account = make_user(), make_account()
    outbox.create_send(user, account, PEOPLE, "S", "B")
    redis_client.flushdb()  # the job (and its marker) are gone, as after a Redis restart
    assert outbox.sweep(force=True) == [account.id]
    assert queued_job_args(ctx) == [(account.id,)]
    # A marker whose job vanished (evicted) is not trusted either.
    for key in redis_client.scan_iter("rq:job:*"):
        redis_client.delete(key)
    assert outbox.sweep(force=True) == [account.id]

    account.paused_at = utcnow()
    db.session.commit()
    assert outbox.sweep(force=True) == []


def test_sweep_runs_once_per_interval_across_workers(ctx):
    user, account = make_user(), make_account()
    outbox.create_send(user, account, PEOPLE, "S", "B")
    assert outbox.sweep() == [account.id]
    assert outbox.sweep() == []  # another worker within the interval


def test_deferred_messages_are_due_only_from_their_time(ctx):
    user, account = make_user(), make_account()
    send = outbox.create_send(user, account, PEOPLE, "S", "B")
    db.session.execute(
        Message.__table__.update()
        .where(Message.send_id == send.id)
        .values(status=MessageStatus.DEFERRED, due_at=utcnow() + timedelta(minutes=5))
    )
    db.session.commit()
    assert outbox.due_accounts() == []


def test_record_outcome_adds_up_and_survives_a_concurrent_first_insert(ctx):
    account = make_account()
    now = utcnow()
    rollups.record_outcome(account.id, now, sent=2)
    rollups.record_outcome(account.id, now, failed=1)
    db.session.commit()

    # Two sessions race to create tomorrow's row: the second waits for the first, then adds.
    tomorrow = now + timedelta(days=1)
    errors: list[BaseException] = []
    first_inserted = threading.Event()

    def other_worker() -> None:
        with ctx.app_context():
            try:
                first_inserted.wait(10)
                rollups.record_outcome(account.id, tomorrow, sent=5)
                db.session.commit()
            except BaseException as error:  # reported to the test thread below
                errors.append(error)
            finally:
                db.session.remove()

    thread = threading.Thread(target=other_worker)
    thread.start()
    rollups.record_outcome(account.id, tomorrow, sent=1)
    first_inserted.set()
    thread.join(0.5)  # the other insert is blocked behind this uncommitted row
    db.session.commit()
    thread.join(30)
    assert not errors

    db.session.rollback()
    rows = db.session.scalars(select(AccountDailyStats).order_by(AccountDailyStats.day)).all()
    assert [(r.day, r.sent, r.failed) for r in rows] == [
        (now.date(), 2, 1),
        (tomorrow.date(), 6, 0),
    ]
