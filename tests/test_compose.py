"""Compose and the send pages, over the test client: what the pages say, and what the database
and the queue hold afterwards."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage

from lamplight_mail import org_time
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    EmailAccount,
    Message,
    MessageStatus,
    Role,
    Send,
    SendStatus,
    User,
    utcnow,
)
from tests.factories import SMTP_USER, make_account, queued_job_args
from tests.pages import input_value, section
from tests.pages import text as page_text

SUBJECT = "Café mornings are back"
BODY = "Dear friend,\nWe open again on Tuesday.\n"


@pytest.fixture
def operator(app, auth):
    """A logged-in operator with an account of their own; returns (user id, account id)."""
    user_id = auth.login_operator()
    with app.app_context():
        account = make_account(
            owner=db.session.get(User, user_id),
            from_email=SMTP_USER,
            from_name="Olive at Riverside",
        )
        return user_id, account.id


def _compose(browser, **fields):
    return browser.post_multipart(
        "/compose", {"recipients": "", "subject": SUBJECT, "body": BODY, **fields}
    )


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def _page(response) -> str:
    return response.get_data(as_text=True)


def test_compose_says_which_account_and_from_address_it_will_use(app, browser, operator):
    page = _page(browser.get("/compose"))
    assert "Olive at Riverside" in page
    assert "&lt;sender@charity.example&gt;" in page
    assert "your own email account" in page
    for name in ("recipients", "recipients_file", "subject", "body", "body_html"):
        assert f'name="{name}"' in page


def test_an_operator_without_an_account_is_told_to_ask_an_admin(app, auth, browser):
    auth.login_operator()
    page = _page(browser.get("/compose"))
    assert "No email account is set up for you to send from." in page
    assert "ask an admin" in page
    response = _compose(browser, recipients="amy@example.org")
    assert response.status_code == 200
    assert _count(app, Send) == 0


def test_an_admin_without_an_account_is_pointed_at_the_settings(auth, browser):
    auth.login_admin()
    page = _page(browser.get("/compose"))
    assert 'href="/admin/communication-settings"' in page


def test_operators_fall_back_to_the_single_account_when_it_is_the_default(app, auth, browser):
    auth.login_operator()
    with app.app_context():
        make_account(from_email="office@charity.example", default_for_operators=True)
    page = _page(browser.get("/compose"))
    assert "&lt;office@charity.example&gt;" in page
    assert "the single account for all operators" in page


def test_a_send_is_accepted_in_one_request_and_lands_on_its_progress_page(app, browser, operator):
    user_id, account_id = operator
    response = _compose(
        browser,
        recipients="Amy Ng <amy@example.org>\r\nbo@example.org\r\nBO@Example.org\r\n\r\n",
        body=BODY.replace("\n", "\r\n"),
        body_html="<p>We open again</p>",
    )
    assert response.status_code == 302
    match = re.fullmatch(r"/sends/(\d+)", response.headers["Location"])
    assert match

    with app.app_context():
        send = db.session.get(Send, int(match[1]))
        assert (send.user_id, send.account_id, send.status) == (
            user_id,
            account_id,
            SendStatus.QUEUED,
        )
        assert (send.subject, send.body_text, send.body_html) == (
            SUBJECT,
            BODY,  # the browser's CRLF line ends are stored as plain newlines
            "<p>We open again</p>",
        )
        rows = db.session.execute(
            select(Message.recipient_email, Message.recipient_name, Message.status)
        ).all()
        assert sorted(rows) == [
            ("amy@example.org", "Amy Ng", MessageStatus.QUEUED),
            ("bo@example.org", "", MessageStatus.QUEUED),
        ]
        assert queued_job_args(app) == [(account_id,)]

    page = _page(browser.get(response.headers["Location"]))
    assert "on its way (1 repeated address sent once)" in page
    assert '<meta http-equiv="refresh"' in page
    assert "amy@example.org" in page and "Amy Ng" in page


def test_invalid_lines_are_listed_with_reasons_and_nothing_is_queued(app, browser, operator):
    typed = "amy@example.org\nnot an address\nJo <jo@example>\nbo@example.org, cy@example.org"
    response = _compose(browser, recipients=typed)

    page = _page(response)
    assert response.status_code == 200
    assert "3 lines are not a valid address" in page
    assert "line 2" in page and "not an address" in page
    assert "line 3" in page and "Jo &lt;jo@example&gt;" in page
    assert "Put each address on its own line." in page
    assert "amy@example.org" in page  # nothing the user typed is lost
    assert _count(app, Send) == 0
    assert queued_job_args(app) == []

    # The user chooses to leave the bad lines out.
    response = _compose(browser, recipients=typed, drop_invalid="y")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalars(select(Message.recipient_email)).all() == ["amy@example.org"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"subject": ""}, "Enter a subject."),
        ({"body": ""}, "Write the message."),
        ({"subject": "Hello\r\nBcc: everyone@example.org"}, "Line breaks are not allowed here"),
        ({"recipients": ""}, "Add at least one recipient."),
    ],
)
def test_missing_or_bad_fields_are_explained_and_nothing_is_queued(
    app, browser, operator, fields, message
):
    data = {"recipients": "amy@example.org", **fields}
    response = _compose(browser, **data)
    page = _page(response)
    assert response.status_code == 200
    assert message in page
    if data["recipients"]:
        assert "amy@example.org" in page
    assert _count(app, Send) == 0
    assert queued_job_args(app) == []


def _csv(text: str, encoding: str = "utf-8-sig", name: str = "people.csv") -> FileStorage:
    return _file(text.encode(encoding), name)


def _file(content: bytes, name: str) -> FileStorage:
    return FileStorage(io.BytesIO(content), filename=name, content_type="text/csv")


def test_a_csv_upload_adds_recipients_and_merges_repeats(app, browser, operator):
    upload = _csv("Email,Name\nzoe@example.org,Zoë Ørsted\nAMY@example.org,Amy\n,\n")
    response = _compose(browser, recipients="amy@example.org", recipients_file=upload)
    assert response.status_code == 302
    with app.app_context():
        rows = db.session.execute(select(Message.recipient_email, Message.recipient_name)).all()
        assert sorted(rows) == [("amy@example.org", "Amy"), ("zoe@example.org", "Zoë Ørsted")]


def test_a_csv_that_is_not_utf8_is_refused_clearly(app, browser, operator):
    upload = _csv("email,name\nzoe@example.org,Zoë\n", encoding="cp1252")
    response = _compose(browser, recipients="amy@example.org", recipients_file=upload)
    page = _page(response)
    assert response.status_code == 200
    assert "people.csv is not UTF-8 text" in page
    assert "CSV UTF-8" in page
    assert "amy@example.org" in page
    assert _count(app, Send) == 0


def test_a_csv_without_an_email_column_is_refused(app, browser, operator):
    response = _compose(browser, recipients_file=_csv("address\nzoe@example.org\n"))
    assert "has no “email” column" in _page(response)
    assert _count(app, Send) == 0


def test_rows_of_a_csv_with_bad_lines_move_into_the_box_so_nothing_is_lost(app, browser, operator):
    upload = _csv("email,name\nzoe@example.org,Zoë\nnot-valid,Someone\n")
    response = _compose(browser, recipients_file=upload)
    page = _page(response)
    assert "row 3 of people.csv" in page
    assert "The rows of people.csv are now in the recipients box." in page
    box = re.search(r'<textarea[^>]*name="recipients"[^>]*>(.*?)</textarea>', page, re.S)[1]
    assert "Someone &lt;not-valid&gt;" in box and "Zoë &lt;zoe@example.org&gt;" in box
    assert _count(app, Send) == 0


def _box(page: str) -> list[str]:
    """The recipients box's lines as a browser shows them (it drops the newline that opens a
    textarea's content)."""
    box = re.search(r'<textarea[^>]*name="recipients"[^>]*>(.*?)</textarea>', page, re.S)[1]
    return html.unescape(box).removeprefix("\r\n").removeprefix("\n").splitlines()


def test_the_problems_cite_the_lines_of_the_box_as_shown_again(app, browser, operator):
    """The file's rows join the box, repeats merge and bad lines move to the top: the line
    numbers in the problems table are those of the box the user now sees, not of what they
    typed."""
    typed = "amy@example.org\n\nnot an address\nJo <jo@example>"
    upload = _csv("email,name\nzoe@example.org,Zoë\nnot-valid,Someone\namy@example.org,Amy\n")
    page = _page(_compose(browser, recipients=typed, recipients_file=upload))
    rows = re.findall(r"<tr><td>(line \d+[^<]*)</td><td><code>([^<]*)</code>", page)
    assert [where for where, _ in rows] == ["line 1", "line 2", "line 3 (row 3 of people.csv)"]
    box = _box(page)
    for where, text in rows:
        number = int(re.match(r"line (\d+)", where)[1])
        assert box[number - 1] == html.unescape(text), where
    assert box[:3] == ["not an address", "Jo <jo@example>", "Someone <not-valid>"]
    assert _count(app, Send) == 0


def test_an_oversized_upload_is_refused_next_to_the_field(app, browser, operator):
    big = _file(b"email\n" + b"someone@example.org\n" * 270_000, "big.csv")
    response = _compose(browser, recipients="amy@example.org", recipients_file=big)
    page = _page(response)
    assert response.status_code == 200
    assert "The file is larger than 5 MB." in page
    assert _count(app, Send) == 0


def test_ten_thousand_recipients_are_accepted_in_one_request(app, browser, operator):
    lines = "\n".join(
        f"Pérson {i} Featherstonehaugh-Smith <person.number{i}@riverside-charity.org.uk>"
        for i in range(10_000)
    )
    assert len(lines.encode()) > 700_000  # more than Flask's default limit for a form field
    response = _compose(browser, recipients=lines)
    assert response.status_code == 302
    assert _count(app, Message) == 10_000
    with app.app_context():
        assert db.session.scalar(select(Send.recipient_count)) == 10_000


def test_a_send_over_the_allowance_is_held_for_an_admin(app, browser, operator):
    _, account_id = operator
    with app.app_context():
        db.session.get(EmailAccount, account_id).daily_limit = 3
        db.session.commit()
    lines = "\n".join(f"person{i}@example.org" for i in range(5))
    response = _compose(browser, recipients=lines)
    assert response.status_code == 302
    page = _page(browser.get(response.headers["Location"]))
    assert "held for an admin to review" in page
    assert "MailChimp" in page
    assert '<meta http-equiv="refresh"' not in page
    with app.app_context():
        assert db.session.scalar(select(Send.status)) == SendStatus.FLAGGED
        assert set(db.session.scalars(select(Message.status))) == {MessageStatus.PENDING}
    assert queued_job_args(app) == []


def test_operators_see_only_their_own_sends_and_admins_see_all(app, auth, browser, operator):
    _compose(browser, recipients="amy@example.org", subject="Olive's news")
    auth.logout()
    other_id = auth.create_user("bob@charity.example", Role.OPERATOR, "Bob")
    with app.app_context():
        make_account(owner=db.session.get(User, other_id), from_email="bob@charity.example")
    auth.login("bob@charity.example")
    _compose(browser, recipients="amy@example.org", subject="Bob's news")

    page = _page(browser.get("/sends"))
    assert "Bob&#39;s news" in page and "Olive&#39;s news" not in page
    with app.app_context():
        olives = db.session.scalar(select(Send.id).where(Send.subject == "Olive's news"))
    assert browser.get(f"/sends/{olives}").status_code == 404

    auth.logout()
    auth.login_admin()
    page = _page(browser.get("/sends"))
    assert "Bob&#39;s news" in page and "Olive&#39;s news" in page
    assert browser.get(f"/sends/{olives}").status_code == 200


def test_the_sends_list_is_paginated_newest_first(app, browser, operator):
    user_id, account_id = operator
    with app.app_context():
        for number in range(30):
            db.session.add(
                Send(
                    user_id=user_id,
                    account_id=account_id,
                    subject=f"Send number {number:02}",
                    body_text="Hi",
                    status=SendStatus.DONE,
                    recipient_count=0,
                )
            )
        db.session.commit()
    first = _page(browser.get("/sends"))
    assert "Send number 29" in first and "Send number 04" not in first
    assert "Page 1 of 2" in first
    second = _page(browser.get("/sends?page=2"))
    assert "Send number 04" in second and "Send number 29" not in second


def test_the_progress_page_shows_each_recipients_answer_and_when_it_is_retried(
    app, browser, operator
):
    response = _compose(browser, recipients="amy@example.org\nbo@example.org\ncy@example.org")
    send_url = response.headers["Location"]
    later = utcnow().replace(microsecond=0)
    with app.app_context():
        amy, bo, cy = db.session.scalars(select(Message).order_by(Message.id)).all()
        amy.status, amy.sent_at, amy.attempts = MessageStatus.SENT, utcnow(), 1
        amy.last_response = "250 2.0.0 OK queued as 12345"
        bo.status, bo.attempts = MessageStatus.FAILED, 1
        bo.last_response = "550 5.1.1 User unknown"
        cy.status, cy.attempts, cy.due_at = MessageStatus.DEFERRED, 1, later
        cy.last_response = "451 4.3.0 Try again later"
        db.session.commit()

    page = _page(browser.get(send_url))
    assert "250 2.0.0 OK queued as 12345" in page
    assert "550 5.1.1 User unknown" in page
    with app.app_context():
        assert f"until {org_time.local(later):%H:%M %Z}" in page  # the organisation's clock
    assert 'aria-label="1 of 3 sent, 1 failed, 1 still to go"' in page

    failed = _page(browser.get(f"{send_url}?status=failed"))
    assert "bo@example.org" in failed and "amy@example.org" not in failed


def _form_token(browser) -> str:
    token = input_value(_page(browser.get("/compose")), "submission")
    assert token, "the compose form carries no submission token"
    return token


def test_the_same_form_posted_twice_sends_once_and_shows_the_first_send(app, browser, operator):
    # A double click on a slow line: the browser posts the same form twice (dropping the first
    # page, which the server still handles), and nobody should get the email twice.
    token = _form_token(browser)
    fields = {"recipients": "amy@example.org\r\nbo@example.org", "submission": token}
    first = _compose(browser, **fields)
    second = _compose(browser, **fields)

    assert first.status_code == second.status_code == 302
    assert second.headers["Location"] == first.headers["Location"]
    assert _count(app, Send) == 1
    assert _count(app, Message) == 2
    page = _page(browser.get(second.headers["Location"]))
    assert "already sent when you first pressed Send, so it was not sent again" in page


def test_a_new_compose_form_sends_again(app, browser, operator):
    # The same words composed anew are a new email: only a repeat of one form is refused.
    fields = {"recipients": "amy@example.org"}
    first = _compose(browser, submission=_form_token(browser), **fields)
    second = _compose(browser, submission=_form_token(browser), **fields)

    assert first.headers["Location"] != second.headers["Location"]
    assert _count(app, Send) == 2


def test_a_form_refused_for_its_mistakes_keeps_its_token_and_sends_once_corrected(
    app, browser, operator
):
    token = _form_token(browser)
    refused = _compose(browser, recipients="", submission=token)
    assert refused.status_code == 200
    assert input_value(_page(refused), "submission") == token

    sent = _compose(browser, recipients="amy@example.org", submission=token)
    assert sent.status_code == 302
    assert _count(app, Send) == 1


def test_the_progress_page_says_beside_the_counts_why_deferred_mail_waits_and_until_when(
    app, browser, operator
):
    # 60 recipients: the deferred ones are on the table's second page, so only a line beside
    # the counts tells the sender why "deferred 10" is not moving and that all is well.
    typed = "\n".join(f"person{n}@example.org" for n in range(60))
    send_url = _compose(browser, recipients=typed).headers["Location"]
    later = utcnow().replace(microsecond=0) + timedelta(minutes=3)
    with app.app_context():
        messages = db.session.scalars(select(Message).order_by(Message.id)).all()
        for message in messages[:50]:
            message.status, message.sent_at, message.attempts = MessageStatus.SENT, utcnow(), 1
        for offset, message in enumerate(messages[50:]):
            message.status = MessageStatus.DEFERRED
            message.due_at = later + timedelta(seconds=offset)
            message.last_response = "Paced to the account's messages per minute."
        db.session.commit()
        next_due = f"{org_time.local(later):%H:%M %Z}"

    said = page_text(section(_page(browser.get(send_url)), "deferred-reason"))
    assert f"10 messages wait to be sent, the next at {next_due}" in said
    assert "there is nothing to do" in said
    assert "Why: Paced to the account's messages per minute." in said


def test_a_progress_page_without_deferred_mail_says_nothing_of_waiting(app, browser, operator):
    page = _page(browser.get(_compose(browser, recipients="amy@example.org").headers["Location"]))
    assert 'id="deferred-reason"' not in page
