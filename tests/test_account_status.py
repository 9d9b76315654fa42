"""Account status as the pages show it (issue 12, points 1-3): set by tests and by the worker's
real outcomes, with the last success and last failure; answers about the account pause it; a
successful test by its owner resumes it; admins see a banner and get one email an hour."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from lamplight_mail.accounts import alerts, health
from lamplight_mail.delivery import limits, outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountDailyStats,
    EmailAccount,
    Message,
    MessageStatus,
    Role,
    User,
)
from lamplight_mail.recipients import Recipient
from tests.factories import OFFICE365, SMTP_PASSWORD, make_account, statuses
from tests.pages import server_form_data
from tests.smtp_servers import free_port
from tests.workers import run_burst_worker

BANNER = "needs your attention"


def _status(page: str) -> str:
    """The first status badge on the page (pages here show one account)."""
    badges = re.findall(r'<span class="status status-[a-z_]+">([^<]+)</span>', page)
    assert badges, "no status on the page"
    return badges[0]


def _account(app, account_id: int) -> EmailAccount:
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        db.session.expunge(account)
        return account


def _system_account(app, server, password: str) -> int:
    with app.app_context():
        return make_account(
            audited=True, **OFFICE365, server=server, password=password, default_for_operators=True
        ).id


def test_tests_set_the_status_with_the_last_success_and_failure(app, auth, browser, smtp_server):
    auth.login_admin()
    account_id = _system_account(app, smtp_server, "the sign-in password")
    page = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert _status(page) == "Untested" and BANNER not in page

    browser.post(f"/admin/email/{account_id}/test")

    page = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert _status(page) == "Failing"
    failure = re.search(r'<dd class="last-failure">(.*?)</dd>', page, re.S).group(1)
    assert "535 5.7.3" in failure and "app password" in failure
    # Every admin page carries the banner while the account fails.
    users_page = browser.get("/admin/users").get_data(as_text=True)
    assert BANNER in users_page and "535 5.7.3" in users_page

    # The admin types the app password: changed settings are unproven until tested.
    form = server_form_data(smtp_server, password=SMTP_PASSWORD, default_for_operators="y")
    assert browser.post("/admin/email/system", form).status_code == 302
    assert _status(browser.get("/admin/communication-settings").get_data(as_text=True)) == (
        "Untested"
    )
    browser.post(f"/admin/email/{account_id}/test-email", {"to": "ada@example.org"})

    page = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert _status(page) == "Ready" and BANNER not in page
    success = re.search(r'<dd class="last-success">(.*?)</dd>', page, re.S).group(1)
    assert "250" in success
    assert "535 5.7.3" in re.search(r'<dd class="last-failure">(.*?)</dd>', page, re.S).group(1)
    assert smtp_server.recorder.recipients() == ["ada@example.org"]


def test_my_email_never_shows_ready_above_a_failed_test(app, auth, browser, smtp_server):
    operator_id = auth.login_operator()
    with app.app_context():
        owner = db.session.get(User, operator_id)
        make_account(audited=True, **OFFICE365, owner=owner, server=smtp_server, password="wrong")

    page = browser.post("/my/email/test").get_data(as_text=True)

    assert "It did not work" in page and _status(page) == "Failing"
    assert "Ready" not in page


def test_a_successful_test_by_the_owner_resumes_the_paused_account(app, auth, browser, smtp_server):
    operator_id = auth.login_operator()
    with app.app_context():
        owner = db.session.get(User, operator_id)
        account = make_account(
            audited=True,
            **OFFICE365,
            owner=owner,
            server=smtp_server,
            password="the sign-in password",
        )
        health.pause(account, "535 5.7.3 Authentication unsuccessful", "Use an app password.")
        db.session.commit()
        account_id = account.id
    page = browser.get("/my/email").get_data(as_text=True)
    assert _status(page) == "Paused"

    browser.post("/my/email", {"password": SMTP_PASSWORD})
    page = browser.post("/my/email/test").get_data(as_text=True)

    assert "It worked" in page and _status(page) == "Ready"
    account = _account(app, account_id)
    assert account.paused_at is None and account.last_outcome_ok is True


def test_the_worker_sets_ready_and_failing_from_real_deliveries(
    app, auth, browser, smtp_server, worker_env
):
    auth.login_admin()
    account_id = _system_account(app, smtp_server, SMTP_PASSWORD)
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        sender = db.session.scalar(select(User))
        outbox.create_send(sender, account, [Recipient("amy@example.org", "Amy")], "Hi", "Hello")

    run_burst_worker(worker_env)

    page = browser.get("/dashboard").get_data(as_text=True)
    assert _status(page) == "Ready"
    assert "250" in re.search(r'<dd class="last-success">(.*?)</dd>', page, re.S).group(1)

    # The server goes away: the next delivery cannot connect, and the status says so.
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        account.port = free_port()  # nothing listens there (no form: the status would reset)
        db.session.commit()
        sender = db.session.scalar(select(User))
        send = outbox.create_send(
            sender, account, [Recipient("bo@example.org", "Bo")], "Hi", "Hello"
        )
    run_burst_worker(worker_env)

    page = browser.get("/dashboard").get_data(as_text=True)
    assert _status(page) == "Failing" and BANNER in page
    assert "connection refused" in re.search(r'<dd class="last-failure">(.*?)</dd>', page, re.S)[1]
    with app.app_context():
        assert statuses(send.id) == {"deferred": 1}


# --- point 2: answers about the account itself -----------------------------------------------

ACCOUNT_ANSWERS = [
    ("538 5.7.11 Encryption required for requested authentication mechanism", "encrypted"),
    ("530 5.7.0 Authentication required", "sign in"),
    ("550 5.7.60 SMTP; Client does not have permissions to send as this sender", "Send As"),
    ("550 5.7.30 Basic authentication is not supported for Client Submission", "OAuth"),
]


@pytest.mark.slow
@pytest.mark.parametrize("answer,advice", ACCOUNT_ANSWERS, ids=lambda v: v[:9])
def test_an_answer_about_the_account_pauses_it_with_advice_and_tries_no_more(
    app, auth, browser, smtp_server, worker_env, answer, advice
):
    auth.login_admin()
    smtp_server.recorder.reply_for("amy@example.org", answer)
    account_id = _system_account(app, smtp_server, SMTP_PASSWORD)
    addresses = ["amy@example.org", "bo@example.org", "cy@example.org"]
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        sender = db.session.scalar(select(User))
        people = [Recipient(address, "") for address in addresses]
        send = outbox.create_send(sender, account, people, "Hi", "Hello")

    run_burst_worker(worker_env)

    with app.app_context():
        # Held, not failed, and no attempt counted: they go once the account is fixed.
        assert statuses(send.id) == {"deferred": 3}
        tried = db.session.scalars(select(Message.attempts).where(Message.send_id == send.id))
        assert list(tried) == [0, 0, 0]
    assert smtp_server.recorder.recipients() == []
    page = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert _status(page) == "Paused"
    assert answer.split(" ")[1] in page and advice in page


@pytest.mark.slow
def test_microsofts_daily_quota_stops_the_account_with_advice(
    app, auth, browser, smtp_server, worker_env
):
    auth.login_admin()
    answer = "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
    smtp_server.recorder.reply_for("amy@example.org", answer)
    account_id = _system_account(app, smtp_server, SMTP_PASSWORD)
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        sender = db.session.scalar(select(User))
        people = [Recipient("amy@example.org", ""), Recipient("bo@example.org", "")]
        send = outbox.create_send(sender, account, people, "Hi", "Hello")

    run_burst_worker(worker_env)

    with app.app_context():
        assert statuses(send.id) == {"deferred": 2}
    page = browser.get("/dashboard").get_data(as_text=True)
    assert _status(page) == "Failing"
    assert "5.2.0" in page and "10,000 recipients in 24 hours" in page


# --- point 3: telling the admins ---------------------------------------------------------------


@pytest.mark.slow
def test_admins_get_one_email_an_hour_through_a_working_account(
    app, auth, browser, smtp_server, worker_env, redis_client
):
    auth.login_admin()
    auth.create_user("second.admin@charity.example", role=Role.ADMIN)
    shared_id = _system_account(app, smtp_server, SMTP_PASSWORD)
    browser.post(f"/admin/email/{shared_id}/test")  # proven: a working account
    with app.app_context():
        olive = db.session.get(User, auth.create_user("olive@charity.example"))
        own = make_account(
            audited=True,
            **OFFICE365,
            owner=olive,
            server=smtp_server,
            password="the sign-in password",
        )
        own_id = own.id
        outbox.create_send(olive, own, [Recipient("amy@example.org", "")], "Hi", "Hello")

    run_burst_worker(worker_env)  # pauses olive's account, then delivers the alert

    alerts_received = [
        m for m in smtp_server.recorder.messages if m.message["Subject"].startswith("Lamplight")
    ]
    assert len(alerts_received) == 2  # one message per admin, from the single account
    assert sorted(r for m in alerts_received for r in m.rcpt_tos) == [
        "admin@charity.example",
        "second.admin@charity.example",
    ]
    body = alerts_received[0].message.get_content()
    assert "is paused" in alerts_received[0].message["Subject"]
    assert "535 5.7.3" in body and "app password" in body
    assert alerts_received[0].mail_from == _account(app, shared_id).from_email
    ttl = redis_client.ttl(alerts.ALERTED_KEY.format(account_id=own_id))
    assert 0 < ttl <= alerts.ALERT_INTERVAL_SECONDS

    # Resumed by hand and paused again within the hour: the banner says it, no second email.
    browser.post(f"/admin/email/{own_id}/resume")
    run_burst_worker(worker_env)
    assert _account(app, own_id).paused_at is not None
    assert BANNER in browser.get("/admin/users").get_data(as_text=True)
    subjects = [m.message["Subject"] for m in smtp_server.recorder.messages]
    assert sum(subject.startswith("Lamplight Mail:") for subject in subjects) == 2
    # The alert is an ordinary send: in the log and counted against the single account.
    log_page = browser.get("/log").get_data(as_text=True)
    assert "Lamplight Mail: Olive" in log_page
    with app.app_context():
        sent = db.session.scalars(
            select(Message).where(
                Message.account_id == shared_id, Message.status == MessageStatus.SENT
            )
        ).all()
        assert len(sent) == 2


# --- point 8: test emails count ----------------------------------------------------------------


def test_a_test_email_is_in_the_log_and_counted_in_the_accounts_usage(
    app, auth, browser, smtp_server
):
    auth.login_admin()
    account_id = _system_account(app, smtp_server, SMTP_PASSWORD)

    browser.post(f"/admin/email/{account_id}/test-email", {"to": "ada@example.org"})

    log_page = browser.get("/log").get_data(as_text=True)
    assert "Test message from Lamplight Mail" in log_page and "ada@example.org" in log_page
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        assert limits.usage(account).sent_in_window == 1
        stats = db.session.scalars(select(AccountDailyStats)).all()
        assert [(row.account_id, row.sent) for row in stats] == [(account_id, 1)]
    dashboard = browser.get("/dashboard").get_data(as_text=True)
    assert re.search(r"<dt>Remaining</dt><dd>9,999\b", dashboard)  # of the 10,000 a day


def test_a_refused_test_email_is_logged_failed_and_gives_its_room_back(
    app, auth, browser, smtp_server
):
    auth.login_admin()
    smtp_server.recorder.reply_for("gone@example.org", "550 5.1.1 User unknown")
    account_id = _system_account(app, smtp_server, SMTP_PASSWORD)

    page = browser.post(
        f"/admin/email/{account_id}/test-email", {"to": "gone@example.org"}
    ).get_data(as_text=True)

    assert "550 5.1.1" in page
    with app.app_context():
        [message] = db.session.scalars(select(Message)).all()
        assert (message.status, message.recipient_email) == (
            MessageStatus.FAILED,
            "gone@example.org",
        )
        assert limits.usage(db.session.get(EmailAccount, account_id)).sent_in_window == 0
