"""What real worker processes do when the SMTP server answers badly, goes slow or goes away,
when the password is wrong, and when a worker is killed mid-batch."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select, update

from lamplight_mail.accounts import editing, health
from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountDailyStats,
    AuditEvent,
    EmailAccount,
    Message,
    MessageStatus,
    Send,
    SendStatus,
    utcnow,
)
from lamplight_mail.recipients import Recipient
from tests.factories import SMTP_PASSWORD, make_account, make_user, statuses
from tests.workers import WorkerProcess, explained_by, run_burst_worker, wait_until

pytestmark = pytest.mark.slow


def _compose(account: EmailAccount, *addresses: str) -> Send:
    people = [Recipient(address, address.split("@")[0].title()) for address in addresses]
    return outbox.create_send(make_user(), account, people, "Hello", "Dear friend")


def _message(send: Send, address: str) -> Message:
    db.session.rollback()  # a fresh read: the worker wrote in another process
    return db.session.scalars(
        select(Message).where(Message.send_id == send.id, Message.recipient_email == address)
    ).one()


def _send_status(send_id: int) -> SendStatus:
    db.session.rollback()
    return db.session.scalar(select(Send.status).where(Send.id == send_id))


# Retries a minute or more away: never due again inside the burst that deferred them, however
# slow the machine; the tests move the clock on instead (_time_passes).
SLOW_RETRIES = {
    "LAMPLIGHT_MAIL_RETRY_BASE_SECONDS": "60",
    "LAMPLIGHT_MAIL_RETRY_MAX_SECONDS": "120",
}


def _time_passes(send: Send) -> None:
    """As if the deferred messages' retry time had come."""
    db.session.rollback()
    db.session.execute(
        update(Message)
        .where(Message.send_id == send.id, Message.status == MessageStatus.DEFERRED)
        .values(due_at=utcnow())
    )
    db.session.commit()


def _delay(message: Message) -> float:
    return (message.due_at - message.updated_at).total_seconds()


def test_temporary_answers_are_retried_with_backoff_then_delivered(ctx, smtp_server, worker_env):
    smtp_server.recorder.reply_for(
        "amy@example.org", "451 4.3.0 Try again later", "421 4.7.0 Closing connection"
    )
    send = _compose(make_account(smtp_server), "amy@example.org", "bo@example.org")

    run_burst_worker(worker_env, **SLOW_RETRIES)
    amy = _message(send, "amy@example.org")
    assert (amy.status, amy.attempts, amy.last_response) == (
        MessageStatus.DEFERRED,
        1,
        "451 4.3.0 Try again later",
    )
    # Backoff: about the base after the first try, drawn from its upper half (30 to 60 s)...
    assert 29 <= _delay(amy) <= 61
    assert smtp_server.recorder.recipients() == ["bo@example.org"]

    _time_passes(send)
    run_burst_worker(worker_env, **SLOW_RETRIES)
    amy = _message(send, "amy@example.org")
    assert (amy.status, amy.last_code) == (MessageStatus.DEFERRED, 421)
    # ... twice that after the second, up to the cap (60 to 120 s).
    assert 59 <= _delay(amy) <= 121

    _time_passes(send)
    run_burst_worker(worker_env, **SLOW_RETRIES)
    amy = _message(send, "amy@example.org")
    assert (amy.status, amy.attempts) == (MessageStatus.SENT, 3)
    assert sorted(smtp_server.recorder.recipients()) == ["amy@example.org", "bo@example.org"]
    assert db.session.get(Send, send.id).status == SendStatus.DONE


def test_temporary_answers_give_up_after_the_last_attempt(ctx, smtp_server, worker_env):
    smtp_server.recorder.reply_for("amy@example.org", *["451 4.3.0 Try again later"] * 3)
    send = _compose(make_account(smtp_server), "amy@example.org")

    run_burst_worker(worker_env, LAMPLIGHT_MAIL_MAX_ATTEMPTS="2", **SLOW_RETRIES)
    _time_passes(send)
    run_burst_worker(worker_env, LAMPLIGHT_MAIL_MAX_ATTEMPTS="2", **SLOW_RETRIES)

    amy = _message(send, "amy@example.org")
    assert amy.status == MessageStatus.FAILED
    assert amy.last_response == "451 4.3.0 Try again later (gave up after 2 attempts)"
    assert smtp_server.recorder.recipients() == []


def test_a_permanent_answer_fails_that_message_only_and_keeps_the_answer(
    ctx, smtp_server, worker_env
):
    smtp_server.recorder.reply_for("gone@example.org", "550 5.1.1 User unknown")
    account = make_account(smtp_server)
    send = _compose(account, "amy@example.org", "gone@example.org", "cy@example.org")

    run_burst_worker(worker_env)

    gone = _message(send, "gone@example.org")
    assert (gone.status, gone.last_code, gone.last_response) == (
        MessageStatus.FAILED,
        550,
        "550 5.1.1 User unknown",
    )
    assert statuses(send.id) == {"sent": 2, "failed": 1}
    assert db.session.get(Send, send.id).status == SendStatus.DONE
    stats = db.session.scalars(select(AccountDailyStats)).one()
    assert (stats.sent, stats.failed) == (2, 1)
    assert smtp_server.recorder.connections_total == 1  # the failure did not cost a connection


def test_a_wrong_password_pauses_the_account_and_holds_its_mail_until_resumed(
    ctx, smtp_server, worker_env
):
    account = make_account(smtp_server, password="the sign-in password")
    send = _compose(account, "amy@example.org", "bo@example.org")

    run_burst_worker(worker_env)

    db.session.rollback()
    account = db.session.get(EmailAccount, account.id)
    assert account.paused_at is not None
    assert "535 5.7.3" in account.paused_reason
    assert "app password" in account.paused_advice
    assert db.session.scalars(select(AuditEvent.action)).all() == ["account.paused"]
    for address in ("amy@example.org", "bo@example.org"):
        held = _message(send, address)
        assert (held.status, held.attempts) == (MessageStatus.DEFERRED, 0)
        assert held.last_response.startswith("Held while the account is paused: 535 5.7.3")
    assert smtp_server.recorder.recipients() == []

    run_burst_worker(worker_env)  # still paused: nothing is tried
    assert [ok for _, ok in smtp_server.recorder.logins] == [False]

    # The admin enters the app password and resumes the account.
    account = db.session.get(EmailAccount, account.id)
    editing.set_password(account, SMTP_PASSWORD)
    health.resume(account)
    db.session.commit()
    run_burst_worker(worker_env)

    assert sorted(smtp_server.recorder.recipients()) == ["amy@example.org", "bo@example.org"]
    assert statuses(send.id) == {"sent": 2}


def test_a_quota_answer_holds_the_account_instead_of_failing_the_rest(ctx, smtp_server, worker_env):
    """Microsoft's daily quota: the account waits (tests/test_worker_limits.py has until when),
    its mail untried; no admin needs to resume it."""
    smtp_server.recorder.reply_for(
        "amy@example.org",
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
    )
    account = make_account(smtp_server)
    send = _compose(account, "amy@example.org", "bo@example.org", "cy@example.org")

    run_burst_worker(worker_env)

    db.session.rollback()
    assert db.session.get(EmailAccount, account.id).paused_at is None
    assert statuses(send.id) == {"deferred": 3}
    for address in ("amy@example.org", "bo@example.org", "cy@example.org"):
        assert _message(send, address).attempts == 0
    assert smtp_server.recorder.recipients() == []


def test_a_timeout_after_data_is_an_unknown_outcome_and_not_sent_again(
    ctx, smtp_server, worker_env
):
    # The server takes the whole message and never answers, until the test lets it go. The
    # timeout (which also covers connect, STARTTLS and AUTH) is generous for a busy machine,
    # and the lease outlasts it.
    smtp_server.recorder.stall_after_data("amy@example.org")
    send = _compose(make_account(smtp_server), "amy@example.org")

    try:
        run_burst_worker(
            worker_env, LAMPLIGHT_MAIL_SMTP_TIMEOUT="5", LAMPLIGHT_MAIL_LEASE_SECONDS="15"
        )
    finally:
        smtp_server.recorder.stalls_released.set()
    amy = _message(send, "amy@example.org")
    assert (amy.status, amy.attempts) == (MessageStatus.FAILED, 1)
    assert amy.last_response.startswith("Outcome unknown: ")

    # It may have arrived: another run must not send it again.
    run_burst_worker(worker_env)
    amy = _message(send, "amy@example.org")
    assert (amy.status, amy.attempts) == (MessageStatus.FAILED, 1)
    assert smtp_server.recorder.recipients() in ([], ["amy@example.org"])


def test_a_server_that_is_down_defers_with_the_reason(ctx, worker_env, closed_port):
    account = make_account()
    account.port = closed_port  # nothing listens there
    db.session.commit()
    send = _compose(account, "amy@example.org", "bo@example.org")

    # A backoff far longer than the burst: the retry must not come due before it ends (the
    # suite's fast 1 s backoff did, on a loaded machine, and counted a second attempt).
    run_burst_worker(
        worker_env,
        LAMPLIGHT_MAIL_RETRY_BASE_SECONDS="60",
        LAMPLIGHT_MAIL_RETRY_MAX_SECONDS="120",
    )

    for address in ("amy@example.org", "bo@example.org"):
        message = _message(send, address)
        assert (message.status, message.attempts) == (MessageStatus.DEFERRED, 1)
        assert message.last_response == f"connection refused by 127.0.0.1:{account.port}"


def test_a_worker_killed_mid_batch_loses_nothing(ctx, smtp_server, worker_env, tmp_path):
    smtp_server.recorder.data_delay_seconds = 0.2
    people = [f"person{i}@example.org" for i in range(30)]
    send = _compose(make_account(smtp_server), *people)

    first = WorkerProcess(worker_env, tmp_path / "first.log")
    try:
        with explained_by(first):
            smtp_server.recorder.wait_for(5, timeout=60)
    finally:
        first.kill()
    assert len(smtp_server.recorder.recipients()) < 30, "the worker finished before the kill"

    second = WorkerProcess(worker_env, tmp_path / "second.log")
    try:
        with explained_by(first, second):
            wait_until(lambda: set(smtp_server.recorder.recipients()) >= set(people), timeout=90)
            wait_until(lambda: statuses(send.id) == {"sent": 30}, timeout=30)
            # The send is marked done after the last mark, by the job that made it.
            wait_until(lambda: _send_status(send.id) == SendStatus.DONE, timeout=30)
    finally:
        second.stop()

    received = Counter(smtp_server.recorder.recipients())
    assert set(received) == set(people)
    assert sum(received.values()) - len(people) <= 1  # only the message on the wire, if any


def test_the_connection_cap_holds_across_workers(ctx, smtp_server, worker_env, tmp_path):
    recorder = smtp_server.recorder
    people = [f"person{i}@example.org" for i in range(60)]
    send = _compose(make_account(smtp_server, connection_cap=2), *people)

    # No answer until both connections are open, however slowly the workers start: the
    # third worker has every chance to open one more meanwhile.
    recorder.hold()
    # The held message waits for as long as the workers take to start: no timeout, no lease
    # running out meanwhile.
    held = {"LAMPLIGHT_MAIL_SMTP_TIMEOUT": "120", "LAMPLIGHT_MAIL_LEASE_SECONDS": "150"}
    workers = [
        WorkerProcess(
            worker_env, tmp_path / f"worker{i}.log", LAMPLIGHT_MAIL_BATCH_SIZE="5", **held
        )
        for i in range(3)
    ]
    try:
        with explained_by(*workers):
            wait_until(lambda: recorder.open_connections() >= 2, timeout=90)
            recorder.release()
            wait_until(lambda: statuses(send.id) == {"sent": 60}, timeout=90)
    finally:
        recorder.release()
        for worker in workers:
            worker.stop()

    assert sorted(recorder.recipients()) == sorted(people)
    assert recorder.max_concurrent_connections == 2


def test_a_slow_answer_to_the_end_of_a_message_outlasting_the_lease_is_not_sent_twice(
    ctx, smtp_server, worker_env, tmp_path
):
    # The server takes longer to answer the end of each message than the suite's 3 s lease,
    # within the SMTP timeout. A second worker, sweeping every second, would claim and send
    # the message again if the first one's hold had lapsed meanwhile.
    smtp_server.recorder.data_delay_seconds = 5
    send = _compose(make_account(smtp_server, connection_cap=2), "amy@example.org")

    workers = [WorkerProcess(worker_env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        with explained_by(*workers):
            wait_until(lambda: statuses(send.id) == {"sent": 1}, timeout=90)
            # Time for a second copy to arrive, were one on its way.
            wait_until(lambda: _send_status(send.id) == SendStatus.DONE, timeout=30)
    finally:
        for worker in workers:
            worker.stop()

    assert smtp_server.recorder.recipients() == ["amy@example.org"]
    assert _message(send, "amy@example.org").attempts == 1
