"""Issue 10, item 13: compose checks sizes before reading the list, lists a bounded number of
problems, and each user gets so many compose posts and account tests per window."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from lamplight_mail.extensions import db
from lamplight_mail.models import AccountHealth, AuditEvent, EmailAccount, Send, User
from tests.factories import make_account


@pytest.fixture
def operator(app, auth) -> int:
    user_id = auth.login_operator()
    with app.app_context():
        make_account(owner=db.session.get(User, user_id))
    return user_id


def _compose(browser, recipients: str, **fields):
    return browser.post(
        "/compose", {"recipients": recipients, "subject": "Hi", "body": "Hello", **fields}
    )


def _sends(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Send))


def test_an_oversized_list_is_refused_unread(app, browser, operator):
    """3.9 MB of recipients used to be read line by line (10-17 s) into a 64 MB page."""
    typed = "not an address\n" * 260_000  # 3.9 MB
    response = _compose(browser, typed)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "The list is longer than 2,000,000 characters" in page
    assert "to correct" not in page  # no problems table: nothing was read
    assert _box(page) == ""  # not sent back either: see below
    assert _sends(app) == 0


def test_too_many_lines_are_refused_before_reading(app, browser, operator):
    response = _compose(browser, "a@example.org\n" * 50_001)
    page = response.get_data(as_text=True)
    assert "The list has more than 50,000 lines" in page
    assert "to correct" not in page
    assert _sends(app) == 0


def test_a_huge_list_is_refused_once_and_not_put_back_in_the_box(app, browser, operator):
    """150,000 lines (3 MB) passed both limits and was refused twice over in one message, and
    the whole list came back in the box: Chromium took 14 s to show that page."""
    typed = "".join(f"person{n}@example.org\n" for n in range(150_000))
    page = _compose(browser, typed).get_data(as_text=True)
    error = re.search(r'<p class="error" id="recipients-error">(.*?)</p>', page, re.S)[1]
    assert error == (
        "The list is longer than 2,000,000 characters. A send can have at most 50,000 "
        "recipients; bulk email belongs in MailChimp. The list was not kept because of its "
        "size: the box is empty."
    )
    # Said under the field, and once more in the summary at the top that links to it.
    assert page.count("bulk email belongs in MailChimp") == 2
    assert _box(page) == ""
    assert len(page) < 100_000
    assert _sends(app) == 0


def test_a_file_taking_the_list_past_the_limit_is_refused_and_not_put_in_the_box(
    app, browser, operator
):
    rows = "".join(f"p{n}@example.org\n" for n in range(50_001))
    upload = FileStorage(io.BytesIO(f"email\n{rows}".encode()), "many.csv", content_type="text/csv")
    fields = {"recipients": "amy@example.org", "recipients_file": upload, "subject": "Hi"}
    # Encoded here, in memory: the test client would spool it to a file it never closes.
    boundary, body = encode_multipart(
        {**fields, "body": "Hello", "csrf_token": browser.csrf_token()}
    )
    response = browser.client.post(
        "/compose", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    page = response.get_data(as_text=True)
    assert (
        "This list has 50,002 recipients. A send can have at most 50,000 recipients; bulk email "
        "belongs in MailChimp. The list was not kept because of its size: the box is empty."
    ) in page
    assert "now in the recipients box" not in page
    assert _box(page) == ""
    assert len(page) < 100_000
    assert _sends(app) == 0


def _box(page: str) -> str:
    return re.search(r'<textarea[^>]*name="recipients"[^>]*>(.*?)</textarea>', page, re.S)[
        1
    ].strip()


def test_a_post_larger_than_the_limit_is_refused_with_a_page(app, browser, operator):
    response = _compose(browser, "x" * (app.config["MAX_CONTENT_LENGTH"] + 1024))
    assert response.status_code == 413
    assert "larger than this form accepts" in response.get_data(as_text=True)


def test_the_problems_listed_are_capped(app, browser, operator):
    typed = "\n".join(f"not an address {n}" for n in range(1, 1001))
    page = _compose(browser, typed).get_data(as_text=True)
    assert "1,000 lines to correct" in page
    assert page.count("<tr><td>line ") == 100
    assert "The first 100 are listed; 900 more lines like these" in page
    assert "not an address 1000" in page  # still in the box: nothing typed is lost


def test_compose_posts_are_limited_per_user(app, auth, browser, operator):
    app.config["COMPOSE_POSTS_PER_WINDOW"] = 3
    for _ in range(3):
        assert _compose(browser, "amy@example.org", subject="").status_code == 200
    response = _compose(browser, "amy@example.org")
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    # Said as the form's own error, not as if a field called "Form" were at fault.
    assert (
        "<li>You have sent or previewed this form many times in a short while. To keep the "
        "service running for everyone, please wait 60 minutes before trying again.</li>" in page
    )
    assert "Form:" not in page
    assert _sends(app) == 0
    # Another user is not held back by it.
    auth.logout()
    other = auth.create_user("amy@charity.example")
    with app.app_context():
        make_account(owner=db.session.get(User, other))
    auth.login("amy@charity.example")
    assert _compose(browser, "zoe@example.org").status_code == 302


def test_account_tests_are_limited_per_user(app, auth, browser, smtp_server):
    app.config["ACCOUNT_TESTS_PER_WINDOW"] = 2
    auth.login_admin()
    with app.app_context():
        account_id = make_account(smtp_server, audited=True, provider="office365").id
    for _ in range(2):
        assert "235" in browser.post(f"/admin/email/{account_id}/test").get_data(as_text=True)
    with app.app_context():
        audited = _audit_events(account_id)
        assert [action for _, action in audited] == ["account.tested"] * 2  # one a test
    page = browser.post(f"/admin/email/{account_id}/test-email", {"to": "amy@example.org"})
    text = page.get_data(as_text=True)
    # Nothing was tried: no failure is reported, and the trail and the status are unchanged.
    assert "Not tested: too many tests in a short while. Try again in 10 minutes." in text
    assert "It did not work" not in text and "What happened" not in text
    assert (
        browser.post(f"/admin/email/{account_id}/test")
        .get_data(as_text=True)
        .count("Not tested: too many tests")
        == 1
    )
    assert smtp_server.recorder.connections_total == 2
    assert smtp_server.recorder.messages == []
    with app.app_context():
        assert _audit_events(account_id) == audited
        assert db.session.get(EmailAccount, account_id).health == AccountHealth.READY


def test_an_operators_own_test_past_the_limit_is_not_tested_nor_failed(
    app, auth, browser, smtp_server
):
    app.config["ACCOUNT_TESTS_PER_WINDOW"] = 1
    user_id = auth.login_operator()
    with app.app_context():
        account_id = make_account(smtp_server, owner=db.session.get(User, user_id)).id
    assert "It worked" in browser.post("/my/email/test").get_data(as_text=True)
    text = browser.post("/my/email/test").get_data(as_text=True)
    assert "Not tested: too many tests in a short while. Try again in 10 minutes." in text
    assert "It did not work" not in text
    assert smtp_server.recorder.connections_total == 1
    with app.app_context():
        assert db.session.get(EmailAccount, account_id).health == AccountHealth.READY
        assert [action for _, action in _audit_events(account_id)] == ["account.tested"]


def _audit_events(account_id: int) -> list[tuple[int, str]]:
    """The account's audit trail after its creation: (id, action), oldest first."""
    return [
        tuple(row)
        for row in db.session.execute(
            select(AuditEvent.id, AuditEvent.action)
            .where(AuditEvent.target_type == "email_account", AuditEvent.target_id == account_id)
            .where(AuditEvent.action != "account.created")
            .order_by(AuditEvent.id)
        )
    ]
