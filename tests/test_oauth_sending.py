"""OAuth 2.0 end to end: pages, a real worker (`python worker.py --burst`), the local
authorization server, aiosmtpd with AUTH XOAUTH2 and the local Microsoft Graph: register, sign
in, test connection and test email, send, token expiry and refresh, revocation pausing the
account with mail held, signing in again resuming it, Graph's 429 Retry-After and 401."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import Message
from tests.factories import SMTP_USER
from tests.oauth_servers import MAILBOX
from tests.oauth_support import accounts_in_db, oauth_form, register_apps, sign_in
from tests.workers import run_burst_worker

pytestmark = [pytest.mark.slow, pytest.mark.oauth]


@pytest.fixture
def env(worker_env: dict, oauth_env: dict) -> dict:
    return {**worker_env, **oauth_env}


def _compose(browser, *recipients: str, subject: str = "Café mornings are back") -> None:
    response = browser.post(
        "/compose",
        {"recipients": "\n".join(recipients), "subject": subject, "body": "Dear friend,\n"},
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def _statuses(app) -> dict[str, int]:
    with app.app_context():
        counts: dict[str, int] = {}
        for message in db.session.scalars(select(Message)):
            counts[message.status.value] = counts.get(message.status.value, 0) + 1
        return counts


def _single_account(app, auth, browser, **form) -> int:
    """The admin registers the apps, makes the single account (default for everyone) an
    OAuth 2.0 account and signs in to it."""
    auth.login_admin(SMTP_USER)
    register_apps(browser)
    response = browser.post("/admin/email/system", oauth_form(default_for_operators="y", **form))
    assert response.status_code == 302, response.get_data(as_text=True)
    [account] = accounts_in_db(app)
    if account.is_delegated:
        sign_in(browser, f"/admin/email/{account.id}/connect")
    return account.id


def test_xoauth2_end_to_end_test_connection_test_email_send_and_refresh(
    app, auth, browser, authority, xoauth2_server, env
):
    account_id = _single_account(app, auth, browser, **_smtp(xoauth2_server))

    tested = browser.post(f"/admin/email/{account_id}/test").get_data(as_text=True)
    assert "It worked" in tested and "235" in tested
    emailed = browser.post(f"/admin/email/{account_id}/test-email", {"to": "amy@example.org"})
    assert "It worked" in emailed.get_data(as_text=True)
    assert xoauth2_server.recorder.wait_for(1)[0].rcpt_tos == ["amy@example.org"]

    _compose(browser, "bea@example.org", "cal@example.org")
    run_burst_worker(env)
    xoauth2_server.recorder.wait_for(3)
    assert sorted(xoauth2_server.recorder.recipients()) == [
        "amy@example.org",
        "bea@example.org",
        "cal@example.org",
    ]
    assert _statuses(app) == {"sent": 3}  # the test email is in the log too
    # The worker used the token the web cached in Redis: one refresh so far, every AUTH good.
    assert len(authority.grants("refresh_token")) == 1
    assert all(ok for _user, ok in xoauth2_server.recorder.logins)
    assert {user for user, _ok in xoauth2_server.recorder.logins} == {MAILBOX}

    # The access token expires (the cache does not know yet): the server refuses it, the
    # worker refreshes once and sends.
    authority.expire_access_tokens()
    _compose(browser, "dan@example.org")
    run_burst_worker(env)
    xoauth2_server.recorder.wait_for(4)
    assert _statuses(app) == {"sent": 4}
    assert len(authority.grants("refresh_token")) == 2


def test_a_revoked_grant_pauses_the_account_mail_waits_and_signing_in_again_resumes(
    app, auth, browser, authority, xoauth2_server, env
):
    account_id = _single_account(app, auth, browser, **_smtp(xoauth2_server))
    authority.revoke()  # the cached access token dies with it
    _compose(browser, "bea@example.org", "cal@example.org")
    run_burst_worker(env)

    assert xoauth2_server.recorder.messages == []
    assert _statuses(app) == {"deferred": 2}  # held, nothing failed
    [account] = accounts_in_db(app)
    assert account.paused_at is not None and "invalid_grant" in account.paused_reason
    page = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert "Paused" in page and "AADSTS70008" in page
    assert "Sign in again with Microsoft" in page

    sign_in(browser, f"/admin/email/{account_id}/connect")
    assert accounts_in_db(app)[0].paused_at is None
    run_burst_worker(env)
    xoauth2_server.recorder.wait_for(2)
    assert sorted(xoauth2_server.recorder.recipients()) == [
        "bea@example.org",
        "cal@example.org",
    ]
    assert _statuses(app) == {"sent": 2}


def test_graph_sends_the_mime_message_and_obeys_retry_after(
    app, auth, browser, authority, graph, env
):
    _single_account(app, auth, browser, transport="graph")
    graph.script(429, retry_after=2)
    _compose(browser, "bea@example.org", "cal@example.org", subject="Graph news")
    run_burst_worker(env)

    assert graph.messages == []
    assert _statuses(app) == {"deferred": 2}  # the account waits; nothing failed
    with app.app_context():
        answers = {m.last_response for m in db.session.scalars(select(Message))}
    assert any("TooManyRequests" in (answer or "") for answer in answers), answers

    time.sleep(2.5)
    run_burst_worker(env)
    sent = graph.wait_for(2)
    assert {item.path for item in sent} == {"/v1.0/me/sendMail"}
    assert {item.subject for item in sent} == {MAILBOX}
    assert sorted(item.message["To"].addresses[0].addr_spec for item in sent) == [
        "bea@example.org",
        "cal@example.org",
    ]
    assert {item.message["Subject"] for item in sent} == {"Graph news"}
    assert _statuses(app) == {"sent": 2}


def test_graph_401_refreshes_once_then_sends(app, auth, browser, authority, graph, env):
    _single_account(app, auth, browser, transport="graph")
    browser.post(f"/admin/email/{accounts_in_db(app)[0].id}/test")  # caches a token
    refreshes = len(authority.grants("refresh_token"))
    authority.expire_access_tokens()
    _compose(browser, "bea@example.org")
    run_burst_worker(env)
    graph.wait_for(1)
    assert [status for _path, status in graph.requests] == [401, 202]
    assert len(authority.grants("refresh_token")) == refreshes + 1
    assert _statuses(app) == {"sent": 1}


def test_graph_app_grant_sends_as_the_mailbox_with_client_credentials(
    app, auth, browser, authority, graph, env
):
    _single_account(app, auth, browser, transport="graph", oauth_grant="app")
    _compose(browser, "bea@example.org")
    run_burst_worker(env)
    [sent] = graph.wait_for(1)
    assert sent.path == f"/v1.0/users/{SMTP_USER}/sendMail" and sent.subject == "app"
    assert authority.grants("client_credentials")
    assert _statuses(app) == {"sent": 1}


def _smtp(server) -> dict[str, str]:
    return {"host": server.host, "port": str(server.port), "username": MAILBOX}


# --- test connection explains the provider's errors ------------------------------------------


def test_test_connection_explains_an_invalid_client_secret(
    app, auth, browser, authority, xoauth2_server
):
    account_id = _single_account(app, auth, browser, oauth_grant="app", **_smtp(xoauth2_server))
    authority.script_invalid_client_secret()
    page = browser.post(f"/admin/email/{account_id}/test").get_data(as_text=True)
    assert "It did not work" in page and "AADSTS7000215" in page
    assert "Secret ID" in page  # the advice: copy the secret's Value, not its ID


def test_test_connection_explains_googles_invalid_grant(
    app, auth, browser, authority, xoauth2_server
):
    account_id = _single_account(app, auth, browser, provider="gmail", **_smtp(xoauth2_server))
    authority.revoke()
    page = browser.post(f"/admin/email/{account_id}/test").get_data(as_text=True)
    assert "Token has been expired or revoked." in page
    assert "Sign in again" in page and "7 days" in page


def test_test_connection_with_the_app_grant_signs_in_over_xoauth2(
    app, auth, browser, authority, xoauth2_server
):
    account_id = _single_account(app, auth, browser, oauth_grant="app", **_smtp(xoauth2_server))
    page = browser.post(f"/admin/email/{account_id}/test").get_data(as_text=True)
    assert "It worked" in page and "235" in page
    assert [grant["scope"] for grant in authority.grants("client_credentials")] == [
        "https://outlook.office365.com/.default"
    ]


def test_graph_refusing_a_fresh_token_too_pauses_the_account_and_holds_the_mail(
    app, auth, browser, authority, graph, env
):
    _single_account(app, auth, browser, transport="graph")
    graph.script(401)
    graph.script(401)
    _compose(browser, "bea@example.org", "cal@example.org")
    run_burst_worker(env)
    assert graph.messages == []
    assert [status for _path, status in graph.requests] == [401, 401]
    assert len(authority.grants("refresh_token")) == 2  # one to open, one after the first 401
    [account] = accounts_in_db(app)
    assert account.paused_at is not None and account.paused_reason.startswith("401")
    assert _statuses(app) == {"deferred": 2}
