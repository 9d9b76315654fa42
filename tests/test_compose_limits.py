"""Issue 10, item 13: compose checks sizes before reading the list, lists a bounded number of
problems, and each user gets so many compose posts and account tests per window. A list as
large as a send may be (50,000) fits every limit on the way, the form shown again included."""

from __future__ import annotations

import io
import re
from html import unescape

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from lamplight_mail.extensions import db
from lamplight_mail.models import AccountHealth, AuditEvent, EmailAccount, Message, Send, User
from lamplight_mail.recipients import MAX_RECIPIENTS
from lamplight_mail.web.forms.compose import MAX_RECIPIENTS_CHARACTERS
from tests.factories import make_account
from tests.pages import input_value, textarea_value


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
    assert "The list is longer than 3,500,000 characters" in page
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
        f"The list is longer than {MAX_RECIPIENTS_CHARACTERS:,} characters. A send can have at "
        "most 50,000 recipients; bulk email belongs in MailChimp. The list was not kept because "
        "of its size: the box is empty."
    )
    # Said under the field, and once more in the summary at the top that links to it.
    assert page.count("bulk email belongs in MailChimp") == 2
    assert _box(page) == ""
    assert len(page) < 100_000
    assert _sends(app) == 0


def test_a_file_taking_the_list_past_the_limit_is_refused_and_not_put_in_the_box(
    app, browser, operator
):
    # As many rows as a file may hold: with the typed address, one more than a send may have.
    rows = "".join(f"p{n}@example.org\n" for n in range(MAX_RECIPIENTS))
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
        "This list has 50,001 recipients. A send can have at most 50,000 recipients; bulk email "
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


def _people(rows: int, name: str = "Firstname Lastname{n}") -> FileStorage:
    """A CSV of `rows` people with a post code: 3.5 MB for 50,000 of them."""
    lines = ["email,name,post_code"]
    lines += [
        f"firstname.lastname{n}@example.org,{name.format(n=n)},AB{n % 97} {n % 10}XY"
        for n in range(rows)
    ]
    data = ("\n".join(lines) + "\n").encode()
    return FileStorage(io.BytesIO(data), "people.csv", content_type="text/csv")


@pytest.mark.slow
def test_a_50000_row_file_comes_back_in_the_form_after_an_error_and_then_sends(app, auth, browser):
    user_id = auth.login_operator()
    with app.app_context():
        make_account(owner=db.session.get(User, user_id), daily_limit=MAX_RECIPIENTS)
    fields = {"subject": "Hello {first_nam}", "body": "Your post code: {post_code}"}

    first = browser.post_multipart("/compose", {**fields, "recipients_file": _people(50_000)})
    page = first.get_data(as_text=True)
    assert first.status_code == 200
    assert "This field is not known for any recipient: {first_nam}" in page
    assert "The rows of people.csv are now in the recipients box." in page
    box = textarea_value(page, "recipients")
    assert len(box.splitlines()) == 50_000
    assert _sends(app) == 0

    # The browser posts back what the page holds; the subject corrected.
    again = browser.post_multipart(
        "/compose",
        {
            **fields,
            "subject": "Hello {first_name}",
            "recipients": box,
            "merge_data": unescape(input_value(page, "merge_data") or ""),
        },
    )
    assert again.status_code == 302, again.get_data(as_text=True)[-2000:]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 50_000
        last = db.session.scalar(
            select(Message).where(Message.recipient_email == "firstname.lastname49999@example.org")
        )
        assert last.recipient_name == "Firstname Lastname49999"
        assert last.merge_values == {"post_code": "AB44 9XY"}


def test_a_file_of_more_rows_than_a_send_may_have_is_refused_on_the_field(app, browser, operator):
    lines = "\n".join(f"p{n}@x.org" for n in range(MAX_RECIPIENTS + 1))
    upload = FileStorage(io.BytesIO(f"email\n{lines}\n".encode()), "people.csv")
    response = browser.post_multipart(
        "/compose", {"subject": "Hi", "body": "Hello", "recipients_file": upload}
    )
    assert "people.csv has more than 50,000 rows" in response.get_data(as_text=True)
    assert _sends(app) == 0


@pytest.mark.slow
def test_rows_too_long_to_keep_in_the_form_ask_for_the_file_again_instead_of_a_413(
    app, browser, operator
):
    # 4.6 MB of file, within its limit; 4.4 million characters as lines of the recipients box,
    # more than the box takes back.
    upload = _people(30_000, name="Member {n} " + "of the Riverside Food Bank Friends " * 3)
    response = browser.post_multipart(
        "/compose",
        {
            "recipients": "amy@example.org",
            "subject": "Hello {first_nam}",
            "body": "Hello",
            "recipients_file": upload,
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "This field is not known for any recipient: {first_nam}" in page
    assert (
        "The rows of people.csv are too many to keep in this form while you correct it: "
        "correct what is marked, then choose the file again." in page
    )
    assert textarea_value(page, "recipients") == "amy@example.org"  # what was typed stays
    assert _sends(app) == 0


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
