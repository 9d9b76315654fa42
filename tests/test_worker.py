"""Real worker processes (`python worker.py`) against a real Redis and an aiosmtpd server with
STARTTLS + AUTH: what the server received and what the database says afterwards."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from lamplight_mail import suppressions
from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountDailyStats,
    AuthMethod,
    Message,
    MessageStatus,
    Security,
    Send,
    SendStatus,
)
from lamplight_mail.recipients import Recipient
from tests.factories import (
    SMTP_PASSWORD,
    SMTP_USER,
    make_account,
    make_user,
    redis_values,
    statuses,
)
from tests.smtp_servers import start_server
from tests.workers import run_burst_worker

pytestmark = pytest.mark.slow

SUBJECT = "Spring newsletter: café mornings — 10% more places"
# A line starting with a dot must survive SMTP's dot-stuffing.
BODY = "Dear friend,\n\nThe café opens again on Tuesday. Zoë will be there.\n.\n-- Riverside\n"
HTML = "<p>The café opens again on <strong>Tuesday</strong>.</p>"


def test_each_recipient_gets_one_message_of_their_own(ctx, smtp_server, worker_env):
    people = [Recipient(f"person{i}@example.org", f"Pérson {i}") for i in range(40)]
    user, account = make_user(), make_account(smtp_server)
    send = outbox.create_send(user, account, people, SUBJECT, BODY, HTML)

    run_burst_worker(worker_env)

    received = smtp_server.recorder.wait_for(40)
    assert sorted(r for item in received for r in item.rcpt_tos) == sorted(p.email for p in people)
    assert all(len(item.rcpt_tos) == 1 for item in received)
    ids = {m.recipient_email: m.message_id_header for m in _messages(send.id)}
    for item in received:
        message, (rcpt,) = item.message, item.rcpt_tos
        assert item.mail_from == SMTP_USER
        assert message["Message-ID"] == ids[rcpt]
        assert str(message["From"]) == f"Riverside Food Bank <{SMTP_USER}>"
        assert message["To"].addresses[0].addr_spec == rcpt
        assert message["To"].addresses[0].display_name == f"Pérson {rcpt[6:-12]}"
        assert message["Subject"] == SUBJECT
        assert message["Date"] is not None
        assert _text(message.get_body(("plain",))) == BODY
        assert _text(message.get_body(("html",))).strip() == HTML
    assert len({item.message["Message-ID"] for item in received}) == 40
    # One connection, one login, for the whole batch.
    assert smtp_server.recorder.connections_total == 1
    assert smtp_server.recorder.logins == [(SMTP_USER, True)]

    assert statuses(send.id) == {"sent": 40}
    assert db.session.get(Send, send.id).status == SendStatus.DONE
    assert all(m.sent_at and m.last_response.startswith("250") for m in _messages(send.id))
    stats = db.session.scalars(select(AccountDailyStats)).one()
    assert (stats.account_id, stats.sent, stats.failed) == (account.id, 40, 0)
    # Each exchange's latency reached /metrics, however many workers there are.
    assert _scraped(ctx, "lamplight_mail_smtp_latency_seconds_count") == 40


def _scraped(app, sample_name: str) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name
    )


def _text(part) -> str:
    return part.get_content().replace("\r\n", "\n")


def _messages(send_id: int) -> list[Message]:
    db.session.rollback()
    return list(db.session.scalars(select(Message).where(Message.send_id == send_id)))


def test_job_payloads_in_redis_hold_ids_only(ctx, smtp_server, redis_client):
    user, account = make_user(), make_account(smtp_server)
    outbox.create_send(user, account, [Recipient("amy@example.org", "Amy")], SUBJECT, BODY)
    secrets = [SMTP_PASSWORD.encode(), b"Tuesday", b"amy@example.org"]

    values = redis_values(redis_client)
    assert values, "no job was enqueued"
    for value in values:  # RQ stores the call compressed: inflated values are in there too
        for secret in secrets:
            assert secret not in value


def test_a_plain_local_relay_without_tls_or_login_works_too(ctx, worker_env):
    """Like the development catcher `make run` starts: SSL type none, authentication none."""
    relay = start_server(mode="plain")
    try:
        account = make_account(relay, password=None, security=Security.NONE)
        account.auth_method = AuthMethod.NONE
        db.session.commit()
        send = outbox.create_send(make_user(), account, [Recipient("amy@example.org")], "Hi", BODY)
        run_burst_worker(worker_env)
        assert relay.recorder.recipients() == ["amy@example.org"]
        assert statuses(send.id) == {"sent": 1}
    finally:
        relay.stop()


def test_someone_who_unsubscribes_while_a_send_waits_is_not_sent_it(ctx, smtp_server, worker_env):
    people = [Recipient(f"person{i}@example.org", f"Person {i}") for i in range(3)]
    user, account = make_user(), make_account(smtp_server)
    send = outbox.create_send(user, account, people, SUBJECT, BODY)
    suppressions.add(["Person1@example.org"], "unsubscribe", None)  # after compose, before sending
    db.session.commit()

    run_burst_worker(worker_env)

    smtp_server.recorder.wait_for(2)
    assert sorted(smtp_server.recorder.recipients()) == [
        "person0@example.org",
        "person2@example.org",
    ]
    left_out = {m.recipient_email: m for m in _messages(send.id)}["person1@example.org"]
    assert left_out.status == MessageStatus.CANCELLED
    assert "do-not-email list" in left_out.last_response
    assert statuses(send.id) == {"sent": 2, "cancelled": 1}
