"""The message itself, through the pages and a real worker into a real SMTP server: merge
fields, preview, attachments, Reply-To, scheduling, withdrawing, the do-not-email list and
one-click unsubscribe, and the HTML version shown inert."""

from __future__ import annotations

import email
import email.policy
import html
import io
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from lamplight_mail.delivery import outbox
from lamplight_mail.delivery.send_template import subject_line
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    Attachment,
    AuditEvent,
    EmailAccount,
    Message,
    Send,
    SendStatus,
    Suppression,
    User,
    utcnow,
)
from lamplight_mail.recipients import Recipient
from tests.factories import make_account, make_user, queued_job_args
from tests.pages import textarea_value
from tests.workers import run_burst_worker

pytestmark = pytest.mark.slow

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 300 + b"\n%%EOF\r\n"  # every byte value, CR LF too
PEOPLE_CSV = (
    "email,name,Post Code,notes\n"
    "amy@example.org,Amy Pond,AB1 2CD,likes tea\n"
    'rory@example.org,"Williams, Rory",EF3 4GH,\n'
)


@pytest.fixture
def operator(app, auth, smtp_server):
    """A logged-in operator whose own account sends through the test SMTP server."""
    user_id = auth.login_operator()
    with app.app_context():
        account = make_account(smtp_server, owner=db.session.get(User, user_id))
        return user_id, account.id


def _compose(browser, **fields):
    return browser.post_multipart(
        "/compose", {"recipients": "", "subject": "Hello", "body": "Dear friend\n", **fields}
    )


def _file(content: bytes, name: str, kind: str = "application/octet-stream") -> FileStorage:
    return FileStorage(io.BytesIO(content), filename=name, content_type=kind)


def _page(response) -> str:
    return response.get_data(as_text=True)


def _hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', page) or re.search(
        rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', page
    )
    assert match, f"no hidden {name}"
    return html.unescape(match.group(1))


def _sends(app) -> list[Send]:
    with app.app_context():
        return list(db.session.scalars(select(Send)))


def _only_send(app) -> Send:
    (send,) = _sends(app)
    return send


def _text(part) -> str:
    return part.get_content().replace("\r\n", "\n")


# --- Merge fields ---------------------------------------------------------------------------


def test_merge_fields_are_filled_per_recipient_in_subject_text_and_html(
    app, browser, operator, smtp_server, worker_env
):
    response = _compose(
        browser,
        recipients="Zoë <zoe@example.org>\nnoname@example.org",
        recipients_file=_file(PEOPLE_CSV.encode(), "people.csv", "text/csv"),
        subject="Hello {first_name}, news for {post_code}",
        body="Dear {name},\nYour code is {post_code}; {{braces}} stay.\n-- {email}\n",
        body_html="<style>p { color: red }</style><p>Hi {first_name} {last_name}</p>",
    )
    assert response.status_code == 302, _page(response)
    with app.app_context():
        stored = {m.recipient_email: m.merge_values for m in db.session.scalars(select(Message))}
    # Only the columns the message uses are kept, per recipient.
    assert stored["amy@example.org"] == {"post_code": "AB1 2CD"}
    assert stored["zoe@example.org"] == {"post_code": ""}

    run_burst_worker(worker_env)

    received = {item.rcpt_tos[0]: item.message for item in smtp_server.recorder.wait_for(4)}
    amy, rory = received["amy@example.org"], received["rory@example.org"]
    assert amy["Subject"] == "Hello Amy, news for AB1 2CD"
    assert _text(amy.get_body(("plain",))) == (
        "Dear Amy Pond,\nYour code is AB1 2CD; {braces} stay.\n-- amy@example.org\n"
    )
    assert _text(amy.get_body(("html",))).strip() == (
        "<style>p { color: red }</style><p>Hi Amy Pond</p>"
    )
    assert rory["Subject"] == "Hello Rory, news for EF3 4GH"
    assert "<p>Hi Rory Williams</p>" in _text(rory.get_body(("html",)))
    # Fallbacks: no name gives "friend"; no CSV row leaves a column empty.
    nobody = received["noname@example.org"]
    assert nobody["Subject"] == "Hello friend, news for "
    assert _text(nobody.get_body(("plain",))).startswith("Dear friend,\n")
    assert received["zoe@example.org"]["Subject"] == "Hello Zoë, news for "


def test_a_value_is_text_in_the_html_version_never_markup(
    app, browser, operator, smtp_server, worker_env
):
    _compose(
        browser,
        recipients='"<b>Bold</b> Jo" <jo@example.org>',
        body_html="<p>Hi {first_name}</p>",
    )
    run_burst_worker(worker_env)
    (item,) = smtp_server.recorder.wait_for(1)
    assert "<p>Hi &lt;b&gt;Bold&lt;/b&gt;</p>" in _text(item.message.get_body(("html",)))


def test_a_field_no_recipient_has_is_refused_naming_it(app, browser, operator):
    response = _compose(
        browser,
        recipients="amy@example.org",
        subject="For {first_name}",
        body="Your size is {shoe_size} and {Colour}.\n",
    )
    page = _page(response)
    assert response.status_code == 200
    assert "{shoe_size}" in page and "{colour}" in page
    assert "not known for any recipient" in page
    assert _sends(app) == []


# --- Preview --------------------------------------------------------------------------------


def test_preview_shows_the_first_recipients_message_and_queues_nothing(
    app, browser, operator, redis_client
):
    response = _compose(
        browser,
        recipients="Amy Pond <amy@example.org>\nRory Williams <rory@example.org>",
        subject="Hello {first_name}",
        body="Dear {name}\n",
        body_html="<p>Hi {first_name}</p>",
        reply_to="team@charity.example",
        preview="1",
    )
    page = _page(response)
    assert response.status_code == 200
    assert "Preview: nothing has been sent." in page
    assert "Hello Amy" in page and "Dear Amy Pond" in page
    assert "team@charity.example" in page
    assert 'srcdoc="' in page and "&lt;p&gt;Hi Amy&lt;/p&gt;" in page
    assert _sends(app) == []
    assert queued_job_args(app) == []

    chosen = _page(
        _compose(
            browser,
            recipients="Amy Pond <amy@example.org>\nRory Williams <rory@example.org>",
            subject="Hello {first_name}",
            body="Dear {name}\n",
            preview="1",
            preview_as="rory@example.org",
        )
    )
    assert "Hello Rory" in chosen and "Hello Amy" not in chosen
    assert _sends(app) == []


def test_preview_then_send_keeps_the_csv_columns_and_the_attachments(
    app, browser, operator, smtp_server, worker_env
):
    letter, leaflet = PDF, b"\x00\x01leaflet\r\n.\r\n" * 1000
    fields = {
        "subject": "Your letter, {first_name}",
        "body": "Code {post_code}\n",
    }
    first = _compose(
        browser,
        recipients_file=_file(PEOPLE_CSV.encode(), "people.csv", "text/csv"),
        attachments=[
            _file(letter, "letter.pdf", "application/pdf"),
            _file(leaflet, "leaflet.bin"),
        ],
        preview="1",
        **fields,
    )
    page = _page(first)
    assert "Your letter, Amy" in page and "Code AB1 2CD" in page
    assert "letter.pdf" in page and "leaflet.bin" in page
    assert _sends(app) == []
    # The browser shows the form again: the file inputs are empty, the hidden fields carry on.
    response = _compose(
        browser,
        recipients=textarea_value(page, "recipients"),
        merge_data=_hidden(page, "merge_data"),
        staged_attachments=_hidden(page, "staged_attachments"),
        **fields,
    )
    assert response.status_code == 302, _page(response)
    send = _only_send(app)
    with app.app_context():
        names = list(
            db.session.scalars(select(Attachment.filename).where(Attachment.send_id == send.id))
        )
        assert names == ["letter.pdf", "leaflet.bin"]
        # Stored once per send, not once per recipient.
        assert db.session.scalar(select(func.count()).select_from(Attachment)) == 2

    run_burst_worker(worker_env)

    received = smtp_server.recorder.wait_for(2)
    for item in received:
        files = {
            part.get_filename(): part.get_content() for part in item.message.iter_attachments()
        }
        assert files == {"letter.pdf": letter, "leaflet.bin": leaflet}
    subjects = sorted(item.message["Subject"] for item in received)
    assert subjects == ["Your letter, Amy", "Your letter, Rory"]
    assert "Code EF3 4GH" in _text(
        next(i for i in received if i.rcpt_tos == ["rory@example.org"]).message.get_body(("plain",))
    )


def test_attachments_over_the_limit_are_refused_on_the_form(app, browser, operator):
    app.config["ATTACHMENTS_MAX_BYTES"] = 50_000
    app.config["ATTACHMENT_FILE_MAX_BYTES"] = 40_000
    page = _page(
        _compose(
            browser, recipients="amy@example.org", attachments=[_file(b"x" * 45_000, "big.pdf")]
        )
    )
    assert "big.pdf is" in page and "a file can be at most" in page
    page = _page(
        _compose(
            browser,
            recipients="amy@example.org",
            attachments=[_file(b"x" * 30_000, "a.pdf"), _file(b"y" * 30_000, "b.pdf")],
        )
    )
    assert "together they can be at most" in page
    assert _sends(app) == []


# --- Reply-To, the HTML shown inert ------------------------------------------------------------


def test_reply_to_arrives_and_the_send_page_shows_the_message_inert(
    app, browser, operator, smtp_server, worker_env
):
    hostile = (
        '<p>Hello</p><script>alert("x")</script>'
        '<img src="https://tracker.example/pixel.gif"><p onclick="steal()">Click</p>'
    )
    response = _compose(
        browser,
        recipients="amy@example.org",
        subject="Minutes",
        body="The minutes.\n",
        body_html=hostile,
        reply_to="team@charity.example",
        attachments=[_file(PDF, "minutes.pdf", "application/pdf")],
    )
    assert response.status_code == 302, _page(response)
    send = _only_send(app)
    page = _page(browser.get(f"/sends/{send.id}"))
    assert "The minutes." in page and "minutes.pdf" in page and "team@charity.example" in page
    # The HTML only ever appears escaped inside a sandboxed frame's srcdoc, led by a policy
    # that blocks remote content.
    assert "<script>alert" not in page and "<img src=" not in page
    frame = re.search(r"<iframe([^>]*)>", page).group(1)
    assert 'sandbox=""' in frame
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert srcdoc.startswith(
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
    )
    assert '<script>alert("x")</script>' in srcdoc  # inert: the sandbox runs no script
    download = browser.get(f"/sends/{send.id}/attachments/0")
    assert download.data == PDF
    assert download.headers["Content-Disposition"].startswith("attachment")

    run_burst_worker(worker_env)
    (item,) = smtp_server.recorder.wait_for(1)
    assert item.message["Reply-To"] == "team@charity.example"


# --- Scheduling ---------------------------------------------------------------------------------


def _next(month: int, day: int) -> date:
    """The next such day after today: within the year send_at may be ahead."""
    today = date.today()
    coming = date(today.year, month, day)
    return coming if coming > today else coming.replace(year=today.year + 1)


SUMMER, WINTER = _next(7, 14), _next(1, 14)
# Any time in the coming weeks, for a send that must wait.
LATER = f"{date.today() + timedelta(days=30):%Y-%m-%d}T09:30"


@pytest.mark.parametrize(
    ("typed", "utc", "shown"),
    [
        # British Summer Time: 09:30 in London is 08:30 UTC.
        (f"{SUMMER}T09:30", f"{SUMMER} 08:30", f"{SUMMER:%d %b %Y} 09:30 BST"),
        (f"{WINTER}T09:30", f"{WINTER} 09:30", f"{WINTER:%d %b %Y} 09:30 GMT"),
    ],
)
def test_send_at_is_read_and_shown_in_the_organisations_time_zone(
    app, browser, operator, typed, utc, shown
):
    response = _compose(browser, recipients="amy@example.org", send_at=typed)
    assert response.status_code == 302, _page(response)
    send = _only_send(app)
    assert send.status == SendStatus.SCHEDULED
    assert f"{send.send_at:%Y-%m-%d %H:%M}" == utc
    page = _page(browser.get(f"/sends/{send.id}"))
    assert f"Scheduled for {shown}" in page
    assert "Send now" in page


def test_send_at_in_the_past_or_in_the_missing_hour_is_refused(app, browser, operator):
    page = _page(_compose(browser, recipients="amy@example.org", send_at="2020-01-01T09:00"))
    assert "That time has passed." in page
    page = _page(_compose(browser, recipients="amy@example.org", send_at="2031-03-30T01:30"))
    assert "does not exist" in page
    page = _page(_compose(browser, recipients="amy@example.org", send_at="tomorrow"))
    assert "YYYY-MM-DDTHH:MM" in page
    assert _sends(app) == []


@pytest.mark.parametrize("typed", ["9999-12-31T23:59", f"{date.today().year + 2}-01-01T09:00"])
def test_send_at_more_than_a_year_ahead_is_refused(app, browser, operator, typed):
    """9999-12-31T23:59 was accepted: the send would have waited for ever, unnoticed."""
    page = _page(_compose(browser, recipients="amy@example.org", send_at=typed))
    assert "That is more than a year ahead. Choose a time within the next year." in page
    assert _sends(app) == []


def test_a_scheduled_send_goes_only_when_due(app, smtp_server, worker_env):
    with app.app_context():
        user, account = make_user(), make_account(smtp_server)
        send = outbox.create_send(
            user,
            account,
            [Recipient("amy@example.org", "Amy")],
            "Tomorrow's news",
            "Body\n",
            extras=outbox.Extras(send_at=utcnow() + timedelta(seconds=4)),
        )
        assert send.status == SendStatus.SCHEDULED
        send_id = send.id
    run_burst_worker(worker_env)
    assert smtp_server.recorder.messages == []
    with app.app_context():
        assert db.session.get(Send, send_id).status == SendStatus.SCHEDULED
        due = db.session.get(Send, send_id).send_at
    # Wait for the moment itself, not a guess at how long the worker takes.
    while utcnow() < due:
        smtp_server.recorder.wait_for(0, timeout=0.1)
    run_burst_worker(worker_env)
    (item,) = smtp_server.recorder.wait_for(1)
    assert item.rcpt_tos == ["amy@example.org"]
    with app.app_context():
        assert db.session.get(Send, send_id).status == SendStatus.DONE


def test_send_now_asks_first_saying_how_many_go_then_starts_the_send(
    app, browser, operator, smtp_server, worker_env
):
    _compose(
        browser,
        recipients="amy@example.org\nrory@example.org\nzoe@example.org",
        send_at=LATER,
    )
    send = _only_send(app)
    with app.app_context():
        db.session.add(Suppression(email="rory@example.org", source="admin"))
        db.session.commit()
    # The send's page offers a link to a confirmation, not a one-click button.
    detail = _page(browser.get(f"/sends/{send.id}"))
    assert f'<a class="button" href="/sends/{send.id}/send-now">Send now</a>' in detail
    assert f'action="/sends/{send.id}/send-now"' not in detail
    page = " ".join(_page(browser.get(f"/sends/{send.id}/send-now")).split())
    assert "Send “Hello” now?" in page
    assert "2 messages will go now" in page
    assert "1 address put on the do-not-email list since it was composed is left out" in page
    assert "Keep it scheduled" in page
    assert _only_send(app).status == SendStatus.SCHEDULED  # the GET changes nothing

    response = browser.post(f"/sends/{send.id}/send-now")
    assert response.status_code == 302
    assert _only_send(app).status == SendStatus.QUEUED
    run_burst_worker(worker_env)
    assert sorted(i.rcpt_tos[0] for i in smtp_server.recorder.wait_for(2)) == [
        "amy@example.org",
        "zoe@example.org",
    ]
    # Started, it is no longer offered: the page says why.
    page = _page(browser.get(f"/sends/{send.id}/send-now"))
    assert "It cannot be sent early: this send is" in page
    assert "Keep it scheduled" not in page


def test_send_now_warns_when_the_send_would_be_held_for_an_admin(app, browser, operator):
    _, account_id = operator
    _compose(browser, recipients="a@example.org\nb@example.org", send_at=LATER)
    send = _only_send(app)
    with app.app_context():
        db.session.get(EmailAccount, account_id).daily_limit = 1
        db.session.commit()
    page = " ".join(_page(browser.get(f"/sends/{send.id}/send-now")).split())
    assert "2 messages will go now" in page
    assert "so it would be held for an admin to review instead. This send has 2" in page


# --- Withdrawing ----------------------------------------------------------------------------------


def test_the_sender_cancels_with_a_confirmation_that_says_how_many(
    app, auth, browser, operator, smtp_server, worker_env
):
    _compose(
        browser,
        recipients="a@example.org\nb@example.org\nc@example.org",
        send_at=LATER,
    )
    send = _only_send(app)
    page = _page(browser.get(f"/sends/{send.id}/cancel"))
    assert "3 messages will not be sent" in page
    assert _only_send(app).status == SendStatus.SCHEDULED  # the GET changes nothing

    # Nobody else may: another operator sees no such send.
    auth.logout()
    auth.login_operator("otto@charity.example")
    assert browser.get(f"/sends/{send.id}/cancel").status_code == 404
    assert browser.post(f"/sends/{send.id}/cancel").status_code == 404
    auth.logout()
    auth.login("olive@charity.example")

    response = browser.post(f"/sends/{send.id}/cancel")
    assert response.status_code == 302
    assert _only_send(app).status == SendStatus.CANCELLED
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count()).select_from(Message).where(Message.status == "cancelled")
            )
            == 3
        )
    run_burst_worker(worker_env)
    assert smtp_server.recorder.messages == []


def test_an_admin_may_cancel_anyones_send(app, auth, browser, operator):
    _compose(browser, recipients="a@example.org", send_at=LATER)
    send = _only_send(app)
    auth.logout()
    auth.login_admin()
    assert "1 message will not be sent" in _page(browser.get(f"/sends/{send.id}/cancel"))
    browser.post(f"/sends/{send.id}/cancel")
    assert _only_send(app).status == SendStatus.CANCELLED


# --- The do-not-email list and unsubscribing -----------------------------------------------


def test_admins_keep_the_do_not_email_list_and_it_is_audited(app, auth, browser):
    auth.login_admin()
    assert browser.post("/admin/suppressions/add", {"email": "Amy@Example.org"}).status_code == 302
    page = _page(browser.post("/admin/suppressions/add", {"email": "not an address"}))
    assert "not an address" in page or "valid" in page
    csv = "email,name\nrory@example.org,Rory\nbad-line\nAMY@example.org,Amy\n"
    data = {
        "file": _file(csv.encode(), "optout.csv", "text/csv"),
        "csrf_token": browser.csrf_token(),
    }
    response = browser.client.post(
        "/admin/suppressions/import", data=data, content_type="multipart/form-data"
    )
    assert response.status_code == 302
    page = _page(browser.get("/admin/suppressions", follow_redirects=True))
    assert "amy@example.org" in page and "rory@example.org" in page
    searched = _page(browser.get("/admin/suppressions?q=rory"))
    assert "rory@example.org" in searched and "amy@example.org" not in searched
    with app.app_context():
        rory = db.session.scalar(select(Suppression).where(Suppression.email == "rory@example.org"))
        rory_id = rory.id
    assert "Take rory@example.org off" in _page(
        browser.get(f"/admin/suppressions/{rory_id}/remove")
    )
    browser.post(f"/admin/suppressions/{rory_id}/remove")
    with app.app_context():
        assert list(db.session.scalars(select(Suppression.email))) == ["amy@example.org"]
        actions = list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions[-3:] == ["suppression.added", "suppression.imported", "suppression.removed"]


def test_operators_cannot_see_the_list(auth, browser):
    auth.login_operator()
    assert browser.get("/admin/suppressions").status_code == 403


def test_compose_leaves_listed_addresses_out_and_says_how_many(
    app, browser, operator, smtp_server, worker_env
):
    with app.app_context():
        db.session.add(Suppression(email="rory@example.org", source="admin"))
        db.session.commit()
    recipients = "amy@example.org\nRORY@example.org"
    page = _page(_compose(browser, recipients=recipients, preview="1"))
    assert "1 address is on the do-not-email list and will be left out." in page
    response = _compose(browser, recipients=recipients)
    assert response.status_code == 302
    assert "1 on the do-not-email list left out" in _page(browser.get(response.location))
    assert _only_send(app).recipient_count == 1
    run_burst_worker(worker_env)
    assert smtp_server.recorder.recipients() == ["amy@example.org"]


def test_a_scheduled_send_leaves_out_who_unsubscribed_meanwhile(app, smtp_server, worker_env):
    with app.app_context():
        user, account = make_user(), make_account(smtp_server)
        send = outbox.create_send(
            user,
            account,
            [Recipient("amy@example.org"), Recipient("rory@example.org")],
            "Later",
            "Body\n",
            extras=outbox.Extras(send_at=utcnow() + timedelta(seconds=1)),
        )
        db.session.add(Suppression(email="rory@example.org", source="unsubscribe"))
        db.session.commit()
        due = send.send_at
    while utcnow() < due:
        smtp_server.recorder.wait_for(0, timeout=0.1)
    run_burst_worker(worker_env)
    smtp_server.recorder.wait_for(1)
    assert smtp_server.recorder.recipients() == ["amy@example.org"]


def test_one_click_unsubscribe_works_without_a_session_and_the_get_changes_nothing(
    app, browser, operator, smtp_server, worker_env
):
    response = _compose(
        browser,
        recipients="amy@example.org\nrory@example.org",
        body="News\n",
        body_html="<html><body><p>News</p></body></html>",
        unsubscribe_link="y",
    )
    assert response.status_code == 302, _page(response)
    run_burst_worker(worker_env)
    received = {i.rcpt_tos[0]: i.message for i in smtp_server.recorder.wait_for(2)}
    amy = received["amy@example.org"]
    assert amy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.fullmatch(r"<(http://localhost/u/([\w-]+))>", amy["List-Unsubscribe"])
    assert link, amy["List-Unsubscribe"]
    url, token = link.group(1), link.group(2)
    assert len(token) >= 32
    assert url in _text(amy.get_body(("plain",)))
    assert f'href="{url}"' in _text(amy.get_body(("html",)))
    assert token not in received["rory@example.org"]["List-Unsubscribe"]

    stranger = app.test_client()  # no session, no CSRF token
    page = stranger.get(f"/u/{token}")
    assert page.status_code == 200 and "Unsubscribe" in _page(page)
    assert _suppressed(app) == []
    answer = stranger.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert _suppressed(app) == ["amy@example.org"]
    assert stranger.post("/u/not-a-real-token").status_code == 404
    assert _suppressed(app) == ["amy@example.org"]


def _suppressed(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Suppression.email)))


def _flagged_send(app, addresses: list[str]) -> int:
    """A send held for an admin (an operator's, through the single account); its id."""
    with app.app_context():
        send = outbox.create_send(
            make_user(),
            make_account(),
            [Recipient(address) for address in addresses],
            "Appeal",
            "Please give what you can, {first_name}.\n",
            "<p>Please <em>give</em></p>",
            flag_reason="Over the account's allowance.",
        )
        return send.id


def test_admins_read_the_message_on_the_flagged_release_and_cancel_pages(app, auth, browser):
    auth.login_admin()
    send_id = _flagged_send(app, ["amy@example.org"])
    for url in (
        "/admin/flagged",
        f"/admin/sends/{send_id}/release",
        f"/admin/sends/{send_id}/cancel",
        f"/sends/{send_id}/cancel",
    ):
        page = _page(browser.get(url))
        assert "Please give what you can, {first_name}." in page, url
        assert "&lt;p&gt;Please &lt;em&gt;give&lt;/em&gt;&lt;/p&gt;" in page, url
        assert 'sandbox=""' in page, url
    assert "1 message will not be sent" in _page(browser.get(f"/admin/sends/{send_id}/cancel"))


@pytest.mark.parametrize(
    "subject",
    [
        "Hello Amy",
        "Spring news from the café, Zoë — " * 4,
        "x" * 200,
        "a =?utf-8?q?x?= b",
        "件名" * 40,
    ],
)
def test_a_filled_subject_reads_back_as_written_in_lines_of_at_most_78(subject):
    raw = b"From: a@b.example\r\n" + subject_line(subject) + b"\r\nbody\r\n"
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_releasing_a_flagged_send_leaves_out_who_was_listed_meanwhile(app, auth, browser):
    auth.login_admin()
    send_id = _flagged_send(app, ["amy@example.org", "rory@example.org"])
    with app.app_context():
        db.session.add(Suppression(email="rory@example.org", source="unsubscribe"))
        db.session.commit()
    browser.post(f"/admin/sends/{send_id}/release")
    with app.app_context():
        states = dict(db.session.execute(select(Message.recipient_email, Message.status)).all())
    assert states == {"amy@example.org": "queued", "rory@example.org": "cancelled"}


def test_a_post_without_a_valid_csrf_token_stores_no_attachment(app, browser, operator):
    data = {
        "recipients": "amy@example.org",
        "subject": "Hello",
        "body": "Hi\n",
        "attachments": _file(PDF, "letter.pdf"),
        "csrf_token": "forged",
    }
    boundary, body = encode_multipart(data)
    response = browser.client.post(
        "/compose", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Attachment)) == 0


def test_retention_removes_attachments_with_their_send_and_unsent_uploads_after_a_day(app):
    from lamplight_mail.ops import retention

    with app.app_context():
        user, account = make_user(), make_account()
        old = utcnow() - timedelta(days=100)
        unsent = Attachment(
            user_id=user.id,
            filename="a.pdf",
            content_type="application/pdf",
            size=1,
            data=b"x",
            created_at=old,
        )
        fresh = Attachment(
            user_id=user.id, filename="b.pdf", content_type="application/pdf", size=1, data=b"y"
        )
        sent = Attachment(
            user_id=user.id, filename="c.pdf", content_type="application/pdf", size=1, data=b"z"
        )
        db.session.add_all([unsent, fresh, sent])
        db.session.commit()
        send = outbox.create_send(
            user,
            account,
            [Recipient("amy@example.org")],
            "Old",
            "Body\n",
            extras=outbox.Extras(attachments=[sent]),
        )
        db.session.execute(Message.__table__.update().values(status="sent", created_at=old))
        db.session.execute(Send.__table__.update().values(status="done", created_at=old))
        db.session.commit()
        send_id = send.id
        db.session.expunge_all()
        retention.purge(90)
        assert db.session.get(Send, send_id) is None
        names = list(db.session.scalars(select(Attachment.filename)))
    assert names == ["b.pdf"]


def test_unsubscribe_tokens_are_kept_out_of_log_lines():
    from lamplight_mail.ops.structured_logs import redact_text

    line = redact_text('127.0.0.1 - "POST /u/Xy_3-kLmNoPqRsTuVwXyZ0123456789ab HTTP/1.1" 200')
    assert "Xy_3" not in line and "/u/[redacted]" in line
