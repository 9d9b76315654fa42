"""The words and layout around a send: counts in proper English, sends named by their subject,
the unsubscribe pages a recipient sees, the flagged message across the table, the search box."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from lamplight_mail.extensions import db
from lamplight_mail.models import Message, Role, User
from lamplight_mail.wording import plural, send_name
from tests.factories import flagged_and_queued, make_account

STYLESHEET = Path(__file__).resolve().parent.parent / "static" / "style.css"


def _page(response) -> str:
    return response.get_data(as_text=True)


def test_plural_fits_the_count():
    assert plural(1, "recipient") == "1 recipient"
    assert plural(0, "recipient") == "0 recipients"
    assert plural(2500, "address", "addresses") == "2,500 addresses"
    assert send_name("Spring appeal") == "“Spring appeal”"


@pytest.fixture
def sends(app, auth):
    """An operator's flagged send of one and queued send of one, on the single account."""
    operator_id = auth.create_user("olive@charity.example", Role.OPERATOR, "Olive Operator")
    with app.app_context():
        operator = db.session.get(User, operator_id)
        account = make_account(from_email="office@charity.example", default_for_operators=True)
        flagged, queued = flagged_and_queued(operator, account)
        db.session.commit()
        return flagged.id, queued.id


def test_confirmations_and_flashes_name_the_send_by_subject_in_the_singular(auth, browser, sends):
    flagged, queued = sends
    auth.login_admin()
    release = _page(browser.get(f"/admin/sends/{flagged}/release"))
    assert "<h1>Release “Spring appeal”?</h1>" in release
    assert "Its 1 message will be sent" in release and "1 messages" not in release
    assert f"send {flagged}" not in release

    cancel = _page(browser.get(f"/admin/sends/{queued}/cancel"))
    assert "<h1>Cancel “News”?</h1>" in cancel and f"send {queued}" not in cancel
    assert "1 message will not be sent" in cancel

    done = _page(browser.post(f"/admin/sends/{queued}/cancel", follow_redirects=True))
    assert "Cancelled “News”: 1 message will not be sent." in done
    done = _page(browser.post(f"/admin/sends/{flagged}/release", follow_redirects=True))
    assert "Released “Spring appeal”: 1 message queued to go out." in done


def test_an_import_with_one_bad_row_says_so_in_the_singular(auth, browser):
    auth.login_admin()
    data = {
        "file": FileStorage(io.BytesIO(b"email\namy@example.org\nnot-an-address\n"), "out.csv"),
        "csrf_token": browser.csrf_token(),
    }
    browser.client.post("/admin/suppressions/import", data=data, content_type="multipart/form-data")
    page = _page(browser.get("/admin/suppressions"))
    assert "Added 1 address from out.csv (0 were on the list already; 1 row was not a valid" in page


def test_the_flagged_message_opens_across_the_whole_row(auth, browser, sends):
    auth.login_admin()
    page = _page(browser.get("/admin/flagged"))
    assert '<tr class="message-row">\n      <td colspan="8"><details><summary>Read the message' in (
        page
    )
    assert page.count('<th scope="col"') == 8  # the row spans every column


def test_the_search_box_is_styled_like_every_other_field(auth, browser):
    auth.login_admin()
    page = _page(browser.get("/admin/suppressions"))
    assert 'class="narrow search-form" role="search"' in page
    css = STYLESHEET.read_text()
    # The rule that gives text fields their width, padding and border covers the search box.
    field_rule = next(line for line in css.splitlines() if line.startswith("input[type=text]"))
    assert "input[type=search]" in field_rule
    assert ".search-form {" in css


# --- the recipient's unsubscribe pages ------------------------------------------------------


@pytest.fixture
def token(app, sends) -> str:
    with app.app_context():
        message = db.session.scalar(
            select(Message).where(Message.recipient_email == "amy@example.org")
        )
        message.unsubscribe_token = "t" * 32
        db.session.commit()
        return message.unsubscribe_token


def test_unsubscribe_names_the_address_masked_and_knows_it_was_done_before(app, token):
    stranger = app.test_client()
    page = _page(stranger.get(f"/u/{token}"))
    assert "a***@example.org" in page and "amy@example.org" not in page
    done = _page(stranger.post(f"/u/{token}"))
    assert "You are unsubscribed" in done and "a***@example.org" in done

    again = _page(stranger.get(f"/u/{token}"))
    assert "You are already unsubscribed" in again
    assert 'action="/u/' not in again  # no second button to press
    assert "You are already unsubscribed" in _page(stranger.post(f"/u/{token}"))


@pytest.mark.parametrize("bad", ["not-a-real-token", "x" * 80])
def test_a_bad_unsubscribe_link_gets_a_plain_page(app, bad):
    stranger = app.test_client()
    for response in (stranger.get(f"/u/{bad}"), stranger.post(f"/u/{bad}")):
        assert response.status_code == 404
        page = _page(response)
        assert "This unsubscribe link is not valid" in page
        assert "Page not found" not in page and 'href="/"' not in page


def test_a_send_to_one_recipient_says_one_recipient(app, auth, browser, smtp_server):
    user_id = auth.login_operator()
    with app.app_context():
        make_account(smtp_server, owner=db.session.get(User, user_id))
    response = browser.post(
        "/compose",
        {"recipients": "amy@example.org", "subject": "Hello", "body": "Dear friend\n"},
        follow_redirects=True,
    )
    page = _page(response)
    assert "Your email to 1 recipient is on its way." in page
