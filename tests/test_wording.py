"""Pages say what happened in plain words (issue 12, point 10)."""

from __future__ import annotations

import re
from datetime import timedelta

from lamplight_mail.accounts import health
from lamplight_mail.extensions import db
from lamplight_mail.models import AuthMethod, EmailAccount, MessageStatus, Security
from tests.factories import OFFICE365, SMTP_PASSWORD, add_messages, make_account, make_send
from tests.pages import form_data, server_form_data, user_form_data
from tests.smtp_servers import start_server


def test_the_check_page_says_signed_in_only_when_it_was(app, auth, browser, smtp_server):
    admin_id = auth.login_admin()
    relay = start_server(mode="plain")
    try:
        with app.app_context():
            refused_id = make_account(
                audited=True,
                **OFFICE365,
                owner=auth.user(admin_id),
                server=smtp_server,
                password="the sign-in password",
            ).id
            relay_id = make_account(
                audited=True,
                **OFFICE365,
                server=relay,
                password=None,
                auth_method=AuthMethod.NONE,
                security=Security.NONE,
            ).id
        refused = browser.post(f"/admin/email/{refused_id}/test").get_data(as_text=True)
        assert "535 5.7.3" in refused and "signed in as" not in refused

        page = browser.post(f"/admin/email/{relay_id}/test").get_data(as_text=True)
        assert "It worked" in page
        assert "without signing in" in page and "signed in as" not in page
    finally:
        relay.stop()


def test_the_log_shows_the_code_once_and_the_audit_trail_reads_as_words(
    app, auth, browser, smtp_server
):
    auth.login_admin()
    with app.app_context():
        account_id = make_account(audited=True, **OFFICE365, server=smtp_server).id
    browser.post(f"/admin/email/{account_id}/test-email", {"to": "ada@example.org"})
    browser.post("/admin/email/system", server_form_data(smtp_server, password=SMTP_PASSWORD))

    log_page = browser.get("/log").get_data(as_text=True)
    assert "250 2.0.0" in log_page and "250 250" not in log_page
    audit_page = browser.get("/admin/audit").get_data(as_text=True)
    assert re.search(r"Changed the [a-zA-Z ,()%]*password of Single account", audit_page)
    assert "auth_method" not in audit_page and "ok False" not in audit_page
    assert "<dd>succeeded</dd>" in audit_page  # the test email's result
    assert "<dd>None</dd>" not in audit_page and "<dd>True</dd>" not in audit_page


def test_deferred_times_in_one_minute_and_held_mail_read_right(app, auth, browser):
    admin_id = auth.login_admin()
    with app.app_context():
        account = make_account(audited=True, **OFFICE365)
        send = make_send(auth.user(admin_id), account)
        due = (account.created_at + timedelta(minutes=10)).replace(second=5)
        add_messages(send, 1, MessageStatus.DEFERRED, due_at=due)
        add_messages(send, 1, MessageStatus.DEFERRED, due_at=due.replace(second=40))
        db.session.commit()
        account_id = account.id

    def deferred() -> str:
        page = browser.get("/dashboard").get_data(as_text=True)
        return re.search(r"<dt>Deferred</dt><dd>(.*?)</dd>", page, re.S).group(1)

    # Two moments in the same minute read as one: "2, until 10:15", not "10:15 to 10:15".
    figure = deferred()
    assert figure.startswith("2, until") and figure.count("<time") == 1, figure

    with app.app_context():
        health.pause(db.session.get(EmailAccount, account_id), "535 5.7.3", "Use an app password.")
        db.session.commit()
    assert deferred() == "2, held until the account is resumed"


def test_the_add_user_hint_does_not_promise_a_blank_keeps_anything(auth, browser):
    auth.login_admin()
    page = browser.get("/admin/users/new").get_data(as_text=True)
    assert "Blank keeps" not in page and "Required: at least" in page


# --- point 11: first steps link to the next step --------------------------------------------


def test_the_welcome_and_the_empty_dashboard_link_to_communication_settings(browser):
    response = browser.post(
        "/setup",
        {
            "email": "ada@charity.example",
            "name": "Ada Admin",
            "password": "correct horse battery",
            "confirm": "correct horse battery",
        },
    )
    assert response.status_code == 302
    page = browser.get(response.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert re.search(r'Welcome\. Next, <a href="/admin/communication-settings">', page)
    dashboard = browser.get("/dashboard").get_data(as_text=True)
    assert "No email accounts are set up yet." in dashboard
    assert 'href="/admin/communication-settings">Set one up' in dashboard


def test_compose_tells_an_operator_whose_account_waits_for_its_password(app, auth, browser):
    operator_id = auth.login_operator()
    with app.app_context():
        make_account(audited=True, **OFFICE365, default_for_operators=True)
        make_account(audited=True, **OFFICE365, owner=auth.user(operator_id), password=None)

    page = browser.get("/compose").get_data(as_text=True)

    assert "through the single account for all operators" in page
    assert re.search(r'waits for its password: enter it in\s*<a href="/my/email">', page)


def test_authentication_none_asks_before_dropping_the_stored_password(
    app, auth, browser, smtp_server
):
    auth.login_admin()
    with app.app_context():
        account_id = make_account(audited=True, **OFFICE365, server=smtp_server).id
    relay = server_form_data(smtp_server, auth_method="none", security="none", password="")
    relay["password_action"] = "keep"

    page = browser.post("/admin/email/system", relay).get_data(as_text=True)

    assert "saving removes the stored password" in page
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        assert account.has_password and account.auth_method == AuthMethod.LOGIN

    relay["password_action"] = "remove"
    assert browser.post("/admin/email/system", relay).status_code == 302
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        assert not account.has_password and account.auth_method == AuthMethod.NONE


def test_an_empty_field_is_told_what_to_enter_not_that_it_is_required(app, auth, browser):
    # Every other form says what to do ("Enter a subject."); these said WTForms's "This field
    # is required.", twice over (in the summary and beside the field).
    auth.login_admin()
    users = browser.post("/admin/users/new", user_form_data(name="", email="")).get_data(
        as_text=True
    )
    assert "Enter a name." in users and "Enter an email address." in users
    account = browser.post("/admin/email/system", form_data(from_email="")).get_data(as_text=True)
    assert "Enter the address recipients see." in account
    auth.logout()
    login = browser.post("/login", {"email": "", "password": ""}).get_data(as_text=True)
    assert "Enter your email address." in login and "Enter your password." in login
    for page in (users, account, login):
        assert "This field is required" not in page
