"""Test connection and test email against real SMTP servers (aiosmtpd with STARTTLS + AUTH LOGIN,
implicit TLS, scripted refusals), checked against what the server received or answered; and the
help page's whole flow over the test client."""

from __future__ import annotations

import html
import logging
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import AuditEvent, EmailAccount, Security, User
from tests.factories import PASSWORD, SMTP_PASSWORD, SMTP_USER, make_account, stored_text
from tests.pages import input_value, selected_option, server_form_data


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def system_account_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(EmailAccount.id))


def test_the_help_page_flow_from_setup_to_a_received_test_email(app, browser, smtp_server):
    # First run: /setup creates the admin, who lands in the app logged in.
    assert browser.get("/").headers["Location"].endswith("/setup")
    browser.post(
        "/setup",
        {"email": "ada@charity.example", "name": "Ada", "password": PASSWORD, "confirm": PASSWORD},
    )
    settings = page_text(browser.get("/admin/communication-settings"))
    assert "Send via a single email account for all operators" in settings

    # Office 365 preset, filled in without JavaScript.
    filled = browser.post(
        "/admin/email/system",
        server_form_data(smtp_server, fill_preset="Fill in the preset"),
    ).get_data(as_text=True)
    assert input_value(filled, "host") == "smtp.office365.com"
    assert input_value(filled, "port") == "587"
    assert selected_option(filled, "auth_method") == "login"
    assert selected_option(filled, "security") == "tls"

    # Save, pointing host and port at the test server (which stands in for Office 365).
    saved = browser.post(
        "/admin/email/system", server_form_data(smtp_server, default_for_operators="y")
    )
    assert saved.status_code == 302
    account_id = system_account_id(app)

    tested = page_text(browser.post(f"/admin/email/{account_id}/test"))
    assert "It worked" in tested
    assert "235 2.7.0 Authentication successful" in tested
    assert smtp_server.recorder.logins == [(SMTP_USER, True)]

    sent = page_text(
        browser.post(f"/admin/email/{account_id}/test-email", {"to": "trustee@example.org"})
    )
    assert "It worked" in sent and "250 2.0.0 OK queued" in sent
    [received] = smtp_server.recorder.wait_for(1)
    assert received.rcpt_tos == ["trustee@example.org"]
    assert received.mail_from == SMTP_USER
    assert received.message["Subject"] == "Test message from Lamplight Mail"
    assert received.message["From"] == f"Riverside Food Bank <{SMTP_USER}>"
    assert received.message["To"] == "trustee@example.org"
    assert received.message["Message-ID"].endswith("@charity.example>")
    assert "Ada sent this message" in received.message.get_content()

    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["account.tested", "account.test_email"]


def test_implicit_tls_account(app, auth, browser, smtp_ssl_server):
    auth.login_admin()
    browser.post("/admin/email/system", server_form_data(smtp_ssl_server, security="ssl"))
    account_id = system_account_id(app)

    assert "It worked" in page_text(browser.post(f"/admin/email/{account_id}/test"))
    browser.post(f"/admin/email/{account_id}/test-email", {"to": "trustee@example.org"})
    assert smtp_ssl_server.recorder.wait_for(1)[0].rcpt_tos == ["trustee@example.org"]


@pytest.mark.parametrize(
    ("refusal", "advice"),
    [
        (None, "the password must be an app password"),  # the server's own 535 5.7.3
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
            "the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
            'tick "Authenticated SMTP"',
        ),
        (
            "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to "
            "be authenticated successfully. Contact your administrator.",
            "Use OAuth (modern authentication)",
        ),
        (
            "550 5.7.30 Basic authentication is not supported for Client Submission.",
            "Switch this account to OAuth",
        ),
    ],
)
def test_a_refused_sign_in_shows_the_servers_answer_and_what_to_do(
    app, auth, browser, smtp_server, refusal, advice
):
    auth.login_admin()
    smtp_server.recorder.auth_reply = refusal
    password = "sign-in-password-not-app" if refusal is None else SMTP_PASSWORD
    browser.post("/admin/email/system", server_form_data(smtp_server, password=password))

    page = page_text(browser.post(f"/admin/email/{system_account_id(app)}/test"))

    assert "It did not work" in page
    expected = refusal or "535 5.7.3 Authentication unsuccessful"
    assert expected in page
    assert advice in page
    assert smtp_server.recorder.logins == [(SMTP_USER, False)]
    assert password not in page


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word (a firewall that swallows packets)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_server_that_never_answers_is_reported_within_the_timeout(
    app, auth, browser, silent_server
):
    app.config["SMTP_TIMEOUT_SECONDS"] = 1.0
    auth.login_admin()
    with app.app_context():
        account_id = make_account(audited=True, host="127.0.0.1", port=silent_server).id

    page = page_text(browser.post(f"/admin/email/{account_id}/test"))

    assert f"no answer from 127.0.0.1:{silent_server} within 1 s" in page
    assert "Nothing answered within 1 seconds" in page


def test_a_refused_connection_is_explained(app, auth, browser, closed_port):
    auth.login_admin()
    with app.app_context():
        account_id = make_account(audited=True, host="127.0.0.1", port=closed_port).id

    page = page_text(browser.post(f"/admin/email/{account_id}/test"))

    assert "connection refused by 127.0.0.1" in page
    assert "Check the port number" in page


def test_an_untrusted_certificate_is_refused_and_explained(
    app, auth, browser, smtp_server, monkeypatch, tmp_path
):
    empty_store = tmp_path / "empty.pem"
    empty_store.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_store))
    auth.login_admin()
    with app.app_context():
        account_id = make_account(audited=True, server=smtp_server).id

    page = page_text(browser.post(f"/admin/email/{account_id}/test"))

    assert "certificate not trusted" in page
    assert "certificate could not be verified" in page
    assert smtp_server.recorder.logins == []  # the password never left


def test_ssl_type_ssl_on_a_starttls_port_is_explained(app, auth, browser, smtp_server):
    auth.login_admin()
    with app.app_context():
        account_id = make_account(audited=True, server=smtp_server, security=Security.SSL).id

    page = page_text(browser.post(f"/admin/email/{account_id}/test"))

    assert "TLS failed" in page
    assert "Check the SSL type matches the port" in page


def test_an_account_waiting_for_its_password_says_so(app, auth, browser, smtp_server):
    auth.login_admin()
    olive_id = auth.create_user("olive@charity.example")
    with app.app_context():
        account_id = make_account(
            audited=True, owner=db.session.get(User, olive_id), server=smtp_server, password=None
        ).id

    page = page_text(browser.post(f"/admin/email/{account_id}/test"))

    assert "no password is stored for this account" in page
    assert smtp_server.recorder.logins == []


def test_a_test_email_to_a_bad_address_is_refused_next_to_the_field(
    app, auth, browser, smtp_server
):
    auth.login_admin()
    with app.app_context():
        account_id = make_account(audited=True, server=smtp_server).id

    response = browser.post(
        f"/admin/email/{account_id}/test-email", {"to": "trustee@example.org\r\nBcc: x@y.org"}
    )

    page = page_text(response)
    assert response.status_code == 200
    assert 'id="to-error"' in page and "Line breaks are not allowed here" in page
    assert smtp_server.recorder.connections_total == 0


def test_a_rejected_test_email_shows_the_servers_answer(app, auth, browser, smtp_server):
    auth.login_admin()
    smtp_server.recorder.reply_for(
        "full@example.org", "554 5.2.2 mailbox full; STOREDRV.Submission.Exception"
    )
    with app.app_context():
        account_id = make_account(audited=True, server=smtp_server).id

    page = page_text(
        browser.post(f"/admin/email/{account_id}/test-email", {"to": "full@example.org"})
    )

    assert "554 5.2.2 mailbox full" in page
    assert "The sending mailbox is full" in page
    assert smtp_server.recorder.messages == []


def test_an_operator_tests_their_own_account_after_setting_the_password(
    app, auth, browser, smtp_server
):
    olive_id = auth.login_operator()
    with app.app_context():
        make_account(
            audited=True, owner=db.session.get(User, olive_id), server=smtp_server, password=None
        )

    browser.post("/my/email", {"password": SMTP_PASSWORD})
    page = page_text(browser.post("/my/email/test"))

    assert "It worked" in page
    assert smtp_server.recorder.logins == [(SMTP_USER, True)]


def test_the_password_is_not_stored_shown_logged_or_audited_in_clear(
    app, auth, browser, smtp_server, caplog
):
    caplog.set_level(logging.DEBUG)
    auth.login_admin()
    olive_id = auth.create_user("olive@charity.example")
    pages = [
        browser.post("/admin/email/system", server_form_data(smtp_server), follow_redirects=True)
    ]
    account_id = system_account_id(app)
    pages += [
        browser.get("/admin/email/system"),
        browser.get("/admin/communication-settings"),
        browser.post(f"/admin/email/{account_id}/test"),
        browser.post(f"/admin/email/{account_id}/test-email", {"to": "trustee@example.org"}),
        browser.post(
            "/admin/email/operators/new",
            server_form_data(
                smtp_server, operator_id=str(olive_id), password="", password_action="operator"
            ),
            follow_redirects=True,
        ),
    ]
    auth.logout()
    auth.login("olive@charity.example")
    pages += [
        browser.post("/my/email", {"password": SMTP_PASSWORD}, follow_redirects=True),
        browser.post("/my/email/test"),
    ]

    assert smtp_server.recorder.logins == [(SMTP_USER, True)] * 3  # it really was used
    for response in pages:
        assert SMTP_PASSWORD not in response.get_data(as_text=True)
    assert SMTP_PASSWORD not in caplog.text
    assert SMTP_PASSWORD not in stored_text(app)
    with app.app_context():
        tokens = db.session.scalars(select(EmailAccount.password_encrypted)).all()
    assert len(tokens) == 2 and all(SMTP_PASSWORD.encode() not in token for token in tokens)
