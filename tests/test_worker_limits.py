"""The limiter inside real worker processes (`python worker.py`), on a real Redis, delivering to
an aiosmtpd server with STARTTLS + AUTH: what the server received, when, and what the database
and the dashboard say.

Windows are shortened through the workers' environment. The only timing checks are the window
spans of the server's arrival times, which are what the limiter promises; each allows for the
SMTP exchange between a message's reservation and its arrival.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from lamplight_mail.delivery import limits, outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, Message, MessageStatus, Role, User
from lamplight_mail.recipients import Recipient
from tests.factories import make_account, make_user, statuses
from tests.pages import AuthActions, Browser, definitions, section, text
from tests.workers import run_burst_worker, running_workers, wait_until

pytestmark = pytest.mark.slow

HOUR = 3600


@pytest.fixture
def user(ctx) -> User:
    return make_user("olive@charity.example", role=Role.ADMIN)


def limited_account(
    server, *, daily: int, per_minute: int = 100_000, cap: int = 3, owner: User | None = None
):
    return make_account(
        server, owner=owner, daily_limit=daily, per_minute_limit=per_minute, connection_cap=cap
    )


def compose(user: User, account: EmailAccount, addresses: list[str], flag_reason=None):
    people = [Recipient(address, "") for address in addresses]
    return outbox.create_send(user, account, people, "Hello", "Dear friend", None, flag_reason)


def addresses(count: int, domain: str) -> list[str]:
    return [f"person{i}@{domain}" for i in range(count)]


def deferred_due_ats(send_id: int) -> list[datetime]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(Message.due_at).where(
                Message.send_id == send_id, Message.status == MessageStatus.DEFERRED
            )
        )
    )


def timestamp(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


def most_reserved_within(received: list, span: float) -> int:
    """The most messages whose limiter reservations certainly fell inside one `span` of
    seconds. The server knows each reservation's bounds (Received.reserved_between), so this
    holds however slow the machine: no slack for the SMTP exchange is needed."""
    bounds = sorted(item.reserved_between for item in received)
    # The limiter counts whole milliseconds.
    span -= 0.002
    return max(
        sum(1 for low, high in bounds if low >= start and high < start + span)
        for start, _ in bounds
    )


def test_four_workers_racing_never_send_over_the_daily_limit(
    ctx, user, smtp_server, worker_env, tmp_path
):
    settings = {"LAMPLIGHT_MAIL_DAILY_WINDOW_SECONDS": str(HOUR), "LAMPLIGHT_MAIL_BATCH_SIZE": "5"}
    with running_workers(worker_env, tmp_path, 4, **settings):
        for number in range(20):
            # A fresh account each round: four connections (one per worker) race for its 20.
            owner = make_user(f"operator{number}@charity.example")
            account = limited_account(smtp_server, daily=20, cap=4, owner=owner)
            domain = f"round{number}.example.org"
            send_id = compose(user, account, addresses(50, domain)).id

            def settled(send_id: int = send_id) -> bool:
                return statuses(send_id) == {"sent": 20, "deferred": 30}

            wait_until(settled, timeout=90)
            arrivals = [
                item.at
                for item in smtp_server.recorder.messages
                if item.rcpt_tos[0].endswith(domain)
            ]
            assert len(arrivals) == 20, f"round {number}"
            # Deferred to the moment the oldest send leaves the window, not retried in a loop:
            # its place was reserved just before it reached the server, counted at the latest
            # moment it could start (at most limits.PLACES_SECONDS on).
            (due_at,) = set(deferred_due_ats(send_id))
            frees_at = min(arrivals) + HOUR
            latest = frees_at + limits.PLACES_SECONDS + 0.01
            assert frees_at - 5 < timestamp(due_at) <= latest, f"round {number}"


def test_a_flushed_redis_is_rebuilt_from_the_sent_log_before_anything_more_goes(
    ctx, user, smtp_server, worker_env, tmp_path, redis_client
):
    settings = {"LAMPLIGHT_MAIL_DAILY_WINDOW_SECONDS": str(HOUR)}
    with running_workers(worker_env, tmp_path, 2, **settings):
        account = limited_account(smtp_server, daily=20)
        first = compose(user, account, addresses(12, "first.example.org"))
        wait_until(lambda: statuses(first.id) == {"sent": 12}, timeout=60)

        redis_client.flushdb()  # the limiter's windows, the queue, everything
        second = compose(user, account, addresses(20, "second.example.org"))

        wait_until(lambda: statuses(second.id) == {"sent": 8, "deferred": 12}, timeout=60)
    assert len(smtp_server.recorder.messages) == 20


def test_pacing_keeps_every_minute_window_to_the_per_minute_limit(
    ctx, user, smtp_server, worker_env, tmp_path
):
    window = 5
    settings = {
        "LAMPLIGHT_MAIL_MINUTE_WINDOW_SECONDS": str(window),
        # Deferred mail must go at its moment through the job scheduled for it: the sweep,
        # which would also find it, comes too rarely to finish in time.
        "LAMPLIGHT_MAIL_SWEEP_SECONDS": "120",
    }
    with running_workers(worker_env, tmp_path, 2, **settings):
        account = limited_account(smtp_server, daily=10_000, per_minute=30)
        send = compose(user, account, addresses(100, "paced.example.org"))

        received = smtp_server.recorder.wait_for(100, timeout=90)
        wait_until(lambda: statuses(send.id) == {"sent": 100}, timeout=30)
    assert most_reserved_within(received, window) <= 30
    # The check can see a breach: the 100 went in about four windows, not spread thin.
    assert most_reserved_within(received, 2 * window) > 30
    assert len(received) == 100


def test_six_workers_share_the_accounts_three_connections(
    ctx, user, smtp_server, worker_env, tmp_path
):
    recorder = smtp_server.recorder
    # No answer until three connections are open, however slowly the workers start: the other
    # three workers have every chance to open more meanwhile.
    recorder.hold()
    try:
        # Held messages wait for as long as the workers take to start: no timeout, no lease
        # running out meanwhile.
        settings = {
            "LAMPLIGHT_MAIL_BATCH_SIZE": "2",
            "LAMPLIGHT_MAIL_SMTP_TIMEOUT": "120",
            "LAMPLIGHT_MAIL_LEASE_SECONDS": "150",
        }
        with running_workers(worker_env, tmp_path, 6, **settings):
            account = limited_account(smtp_server, daily=10_000, cap=3)
            send = compose(user, account, addresses(30, "slow.example.org"))
            wait_until(lambda: recorder.open_connections() >= 3, timeout=90)
            recorder.release()
            wait_until(lambda: statuses(send.id) == {"sent": 30}, timeout=90)
    finally:
        recorder.release()
    assert recorder.max_concurrent_connections == 3


def test_flagged_mail_waits_for_release_then_goes_over_as_many_windows_as_it_needs(
    ctx, user, smtp_server, worker_env, tmp_path
):
    window = 4
    ctx.config["DAILY_WINDOW_SECONDS"] = window  # the compose-time check counts the same way
    settings = {"LAMPLIGHT_MAIL_DAILY_WINDOW_SECONDS": str(window)}
    account = limited_account(smtp_server, daily=3)
    big = addresses(7, "big.example.org")
    flagged = compose(user, account, big, limits.flag_reason(account, len(big)))
    cancelled = compose(user, account, addresses(5, "no.example.org"), "over the limit")
    assert flagged.flag_reason.startswith("This send has 7 recipients, more than the account")

    with running_workers(worker_env, tmp_path, 2, **settings):
        # A small send on the same account goes; the flagged ones stay where they are.
        small = compose(user, account, ["amy@example.org"])
        wait_until(lambda: statuses(small.id) == {"sent": 1}, timeout=60)
        assert statuses(flagged.id) == {"pending": 7}
        assert smtp_server.recorder.recipients() == ["amy@example.org"]

        outbox.cancel(cancelled, user)
        outbox.release(flagged, user)
        wait_until(lambda: statuses(flagged.id) == {"sent": 7}, timeout=90)

    received = smtp_server.recorder.messages
    assert sorted(item.rcpt_tos[0] for item in received[1:]) == sorted(big)
    # Three windows at least: never more than three recipients inside one.
    assert most_reserved_within(received, window) <= 3
    assert statuses(cancelled.id) == {"cancelled": 5}


@pytest.mark.parametrize(
    ("answer", "held_for"),
    [
        # Microsoft's daily quota: until our own oldest send leaves the rolling window.
        ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException", HOUR),
        # A rate answer: a minute's pause.
        ("421 4.7.0 Too many messages, rate limit exceeded", 60),
    ],
)
def test_a_provider_quota_or_rate_answer_holds_the_account_and_fails_nothing(
    ctx, user, smtp_server, worker_env, answer, held_for
):
    smtp_server.recorder.reply_for("bo@example.org", answer)
    account = limited_account(smtp_server, daily=10_000)
    send = compose(user, account, ["amy@example.org", "bo@example.org", "cy@example.org"])

    run_burst_worker(worker_env, LAMPLIGHT_MAIL_DAILY_WINDOW_SECONDS=str(HOUR))

    assert smtp_server.recorder.recipients() == ["amy@example.org"]
    assert statuses(send.id) == {"sent": 1, "deferred": 2}
    waiting = db.session.scalars(
        select(Message).where(Message.send_id == send.id, Message.status == MessageStatus.DEFERRED)
    ).all()
    assert {message.attempts for message in waiting} == {0}
    assert all(message.last_response.startswith("Waiting, as the server") for message in waiting)
    (due_at,) = {message.due_at for message in waiting}
    expected = smtp_server.recorder.messages[0].at + held_for
    assert expected - 5 < timestamp(due_at) < expected + 5
    assert db.session.get(EmailAccount, account.id).paused_at is None


def test_dashboard_shows_what_the_server_received_in_the_window(
    app, app_config, make_app, smtp_server, worker_env, tmp_path, monkeypatch, closed_port
):
    browser = Browser(app.test_client())
    AuthActions(app, browser).login_admin()
    with app.app_context():
        account = limited_account(smtp_server, daily=50)
        compose(make_user(), account, addresses(7, "dash.example.org"))
        account_id = account.id
    run_burst_worker(worker_env)
    received = len(smtp_server.recorder.recipients())
    assert received == 7

    card = section(browser.get("/dashboard").get_data(as_text=True), f"account-{account_id}")
    assert f"{received} of 50 (14%)" in text(card)
    assert definitions(card)["Remaining"] == "43"
    assert "Counted from the delivery log" not in card

    # Redis gone: the same figures from the sent log, and the page says where they come from.
    offline = make_app({**app_config, "REDIS_URL": f"redis://127.0.0.1:{closed_port}/0"})
    browser = Browser(offline.test_client())
    AuthActions(offline, browser).login("admin@charity.example")
    page = browser.get("/dashboard")
    assert page.status_code == 200
    card = section(page.get_data(as_text=True), f"account-{account_id}")
    assert f"{received} of 50 (14%)" in text(card)
    assert "Counted from the delivery log" in card
