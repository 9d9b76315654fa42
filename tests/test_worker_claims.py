"""Claiming with a lease and recording outcomes (claims.py), and per-recipient rendering, on
the real databases."""

from __future__ import annotations

import email
import email.policy
import sqlite3
import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import DBAPIError

from lamplight_mail.delivery import outbox
from lamplight_mail.delivery.claims import Lease, Outcome
from lamplight_mail.delivery.mime import HeaderInjection, build_message, to_bytes
from lamplight_mail.delivery.send_template import SendTemplate
from lamplight_mail.delivery.transactions import write_transaction
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountDailyStats,
    Message,
    MessageStatus,
    Role,
    Send,
    SendStatus,
    utcnow,
)
from lamplight_mail.recipients import Recipient
from tests.factories import make_account, make_user, statuses


@pytest.fixture
def lease(ctx):
    """Make leases (each on its own connection), closed after the test."""
    made: list[Lease] = []

    def make(account_id: int, owner: str = "worker", seconds: float = 30) -> Lease:
        made.append(Lease(account_id, owner, seconds))
        return made[-1]

    yield make
    for each in made:
        each.close()


def _send(count: int = 3, flag_reason: str | None = None) -> Send:
    user, account = make_user(), make_account()
    people = [Recipient(f"p{i}@example.org", f"P {i}") for i in range(count)]
    return outbox.create_send(user, account, people, "Hello", "Body", flag_reason=flag_reason)


def test_a_claim_on_sqlite_begins_immediate(ctx, lease):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL claims with FOR UPDATE SKIP LOCKED")
    send = _send(2)
    statements: list[str] = []

    def remember(conn, cursor, statement, *args) -> None:
        statements.append(statement.split()[0] + " " + statement.split()[1])

    claimer = lease(send.account_id)
    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        assert len(claimer.claim(10)) == 2
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert statements[:2] == ["BEGIN IMMEDIATE", "UPDATE messages"]


def test_an_app_write_transaction_on_sqlite_holds_the_write_lock(ctx):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    db.session.execute(select(Message.id))  # the caller's own session has a read open
    statements: list[str] = []

    def remember(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        with write_transaction():
            db.session.execute(select(Message.id))
            # Another writer cannot start while the claim transaction is open.
            other = sqlite3.connect(db.engine.url.database, timeout=0, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
        db.session.rollback()
    assert statements[0] == "BEGIN IMMEDIATE"


def test_concurrent_claimers_never_take_the_same_message(ctx):
    send = _send(60)
    taken: dict[str, list[int]] = {}
    barrier = threading.Barrier(3)

    account_id = send.account_id

    def claimer(name: str) -> None:
        with ctx.app_context():
            with Lease(account_id, name, 30) as claimer:
                barrier.wait(30)
                mine: list[int] = []
                while batch := claimer.claim(7):
                    mine.extend(message.id for message in batch)
            taken[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"worker-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claimed = [message_id for ids in taken.values() for message_id in ids]
    assert len(taken) == 3
    assert len(claimed) == len(set(claimed)) == 60
    assert statuses(send.id) == {"sending": 60}
    assert db.session.get(Send, send.id).status == SendStatus.SENDING


def test_flagged_and_cancelled_sends_are_never_claimed(ctx, lease):
    user, account = make_user(), make_account()
    people = [Recipient("x@example.org"), Recipient("y@example.org")]
    outbox.create_send(user, account, people, "S", "B", flag_reason="Over the limit")
    cancelled = outbox.create_send(user, account, people, "S", "B")
    outbox.cancel(cancelled, make_user("ada@charity.example", role=Role.ADMIN))
    assert lease(account.id).claim(10) == []


def test_an_expired_lease_is_claimed_again_and_the_old_owner_can_no_longer_mark(ctx, lease):
    send = _send(1)
    dead, other = lease(send.account_id, "dead-worker"), lease(send.account_id, "other")
    (message,) = dead.claim(10)
    assert other.claim(10) == []  # still leased

    past = utcnow() - timedelta(seconds=1)
    with write_transaction():  # the lease runs out
        db.session.execute(update(Message).values(lease_expires_at=past, due_at=past))
    (again,) = other.claim(10)
    assert (again.id, again.attempts) == (message.id, 2)

    assert not dead.record(message, Outcome(MessageStatus.FAILED, "550 5.1.1 no such", 550))
    assert statuses(send.id) == {"sending": 1}  # the old owner changed nothing


def test_expired_leases_are_claimed_before_an_older_backlog(ctx, lease):
    """A dead worker's messages are due from its lease's end, later than every message queued
    before it: they still come first, or they would wait behind the whole backlog."""
    send = _send(3)
    account, user = send.account, make_user("bo@charity.example")
    db.session.commit()  # a claim is coming: no read of ours may straddle its write
    (stranded,) = lease(send.account_id, "dead-worker").claim(1)
    db.session.rollback()
    people = [Recipient(f"b{i}@example.org", "") for i in range(20)]
    backlog = outbox.create_send(user, account, people, "Later", "Body")
    long_ago, just_now = utcnow() - timedelta(hours=1), utcnow() - timedelta(seconds=1)
    with write_transaction():
        db.session.execute(update(Message).values(due_at=long_ago))  # an old backlog...
        db.session.execute(  # ... and a lease that has just run out
            update(Message)
            .where(Message.id == stranded.id)
            .values(lease_expires_at=just_now, due_at=just_now)
        )

    (first,) = lease(send.account_id, "other").claim(1)
    assert (first.id, first.attempts) == (stranded.id, 2)
    assert statuses(backlog.id) == {"queued": 20}


def test_recording_sent_counts_it_and_finishing_marks_the_send_done(ctx, lease):
    send = _send(2)
    worker = lease(send.account_id)
    first, second = worker.claim(10)

    assert worker.record(first, Outcome(MessageStatus.SENT, "250 2.0.0 OK", 250))
    worker.record(second, Outcome(MessageStatus.FAILED, "550 5.1.1 unknown user", 550))
    worker.finish_sends([send.id])

    db.session.rollback()
    assert statuses(send.id) == {"sent": 1, "failed": 1}
    assert db.session.get(Send, send.id).status == SendStatus.DONE
    sent, failed = db.session.get(Message, first.id), db.session.get(Message, second.id)
    assert (sent.last_code, sent.last_response, sent.lease_owner) == (250, "250 2.0.0 OK", None)
    assert abs((utcnow() - sent.sent_at).total_seconds()) < 5
    assert (failed.last_code, failed.last_response) == (550, "550 5.1.1 unknown user")
    stats = db.session.scalars(select(AccountDailyStats)).one()
    assert (stats.sent, stats.failed) == (1, 1)


def test_a_deferred_mark_keeps_its_due_time_and_is_claimed_again_only_then(ctx, lease):
    send = _send(1)
    worker = lease(send.account_id)
    (message,) = worker.claim(10)
    later = utcnow() + timedelta(minutes=10)
    outcome = Outcome(MessageStatus.DEFERRED, "451 4.7.0 try later", 451, due_at=later)
    assert worker.record(message, outcome)

    db.session.rollback()
    deferred = db.session.get(Message, message.id)
    assert (deferred.status, deferred.last_code, deferred.lease_owner) == (
        MessageStatus.DEFERRED,
        451,
        None,
    )
    assert abs((deferred.due_at - later).total_seconds()) < 1
    assert lease(send.account_id, "another").claim(10) == []  # not due yet


def test_a_mark_whose_database_connection_was_killed_is_written_on_a_new_one(ctx, lease):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: a backend to kill")
    send = _send(1)
    worker = lease(send.account_id)
    (message,) = worker.claim(10)
    db.session.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )
    db.session.rollback()

    assert worker.record(message, Outcome(MessageStatus.SENT, "250 2.0.0 OK", 250))
    assert statuses(send.id) == {"sent": 1}


_REFUSE_ROLLUPS = {
    "sqlite": "CREATE TRIGGER refuse_rollups BEFORE INSERT ON account_daily_stats "
    "BEGIN SELECT RAISE(ABORT, 'no rollups today'); END",
    "postgresql": "CREATE FUNCTION refuse_rollups() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'no rollups today'; END $$; "
    "CREATE TRIGGER refuse_rollups BEFORE INSERT ON account_daily_stats "
    "FOR EACH ROW EXECUTE FUNCTION refuse_rollups()",
}


def test_a_failing_mark_statement_says_what_failed_without_its_values(ctx, lease):
    send = _send(1)
    worker = lease(send.account_id)
    (message,) = worker.claim(10)
    answer = "250 2.0.0 OK secret-looking-answer"
    db.session.close()
    with db.engine.begin() as connection:  # the day's rollup cannot be written
        connection.execute(text(_REFUSE_ROLLUPS[db.engine.dialect.name]))

    with pytest.raises(DBAPIError) as raised:
        worker.record(message, Outcome(MessageStatus.SENT, answer, 250))
    assert "no rollups today" in str(raised.value)
    assert answer not in str(raised.value)
    assert statuses(send.id) == {"sending": 1}  # the whole mark was rolled back


def test_cancelling_mid_batch_stops_the_rest_but_the_message_on_the_wire_counts(ctx, lease):
    send = _send(3)
    admin = make_user("ada@charity.example", role=Role.ADMIN)
    db.session.commit()
    worker = lease(send.account_id)
    first, second, third = worker.claim(10)

    outbox.cancel(db.session.get(Send, send.id), admin)

    # The first was already on the wire and the server accepted it: it went.
    assert worker.record(first, Outcome(MessageStatus.SENT, "250 OK", 250))
    # The next check tells the worker the rest are no longer its to send.
    assert worker.renew([second.id, third.id]) == set()
    worker.finish_sends([send.id])
    assert statuses(send.id) == {"sent": 1, "cancelled": 2}
    assert db.session.get(Send, send.id).status == SendStatus.CANCELLED


def test_giving_back_untried_messages_refunds_the_attempt(ctx, lease):
    send = _send(2)
    worker = lease(send.account_id)
    batch = worker.claim(10)
    later = utcnow() + timedelta(minutes=5)
    worker.give_back(batch, status=MessageStatus.DEFERRED, due_at=later, answer="Held")

    db.session.rollback()
    messages = db.session.scalars(select(Message).where(Message.send_id == send.id)).all()
    assert {(m.status, m.attempts, m.last_response, m.lease_owner) for m in messages} == {
        (MessageStatus.DEFERRED, 0, "Held", None)
    }
    assert all(abs((m.due_at - later).total_seconds()) < 1 for m in messages)
    assert lease(send.account_id, "another").claim(10) == []  # not due yet


def test_renewing_extends_the_lease_of_what_is_still_held(ctx, lease):
    send = _send(2)
    worker = lease(send.account_id)
    first, second = worker.claim(10)
    db.session.rollback()
    before = db.session.get(Message, first.id).lease_expires_at
    assert before is not None
    with write_transaction():  # taken over by another worker after a stall
        db.session.execute(
            update(Message).where(Message.id == second.id).values(lease_owner="someone-else")
        )
    assert worker.renew([first.id, second.id]) == {first.id}
    db.session.rollback()
    assert db.session.get(Message, first.id).lease_expires_at >= before


def test_rendering_for_a_recipient_matches_a_message_built_for_them(ctx):
    fields = dict(
        from_email="office@charity.example",
        from_name="Riverside, Food Bank",
        subject="Café news — spring",
        body_text="Hello Zoë\n",
        body_html="<p>Hello</p>",
    )
    rendered = SendTemplate(**fields).render("jo@example.org", 'Smith, "Jo" Zoë', "<a@b.example>")
    built = to_bytes(
        build_message(
            to_email="jo@example.org",
            to_name='Smith, "Jo" Zoë',
            message_id="<a@b.example>",
            **fields,
        )
    )
    ours, theirs = (
        email.message_from_bytes(raw, policy=email.policy.default) for raw in (rendered, built)
    )
    for header in ("From", "To", "Subject", "Message-ID", "MIME-Version"):
        assert str(ours[header]) == str(theirs[header]), header
    assert ours.get_content_type() == theirs.get_content_type() == "multipart/alternative"
    assert ours["To"].addresses[0].display_name == 'Smith, "Jo" Zoë'
    for kind in ("plain", "html"):
        assert ours.get_body((kind,)).get_content() == theirs.get_body((kind,)).get_content()
    assert rendered.count(b"\r\n\r\n") >= 1 and b"\n" not in rendered.replace(b"\r\n", b"")

    with pytest.raises(HeaderInjection):
        SendTemplate(**fields).render("jo@example.org", "Jo\r\nBcc: x@evil.example", "<a@b>")
