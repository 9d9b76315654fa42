"""Issue 10, item 1 (the form part): every character that splits a line (str.splitlines) or is
a control character is refused, with a message, in every field that reaches a mail header. The
email library refuses to build a message with them, which used to kill the delivery job."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, Send, User
from tests.factories import make_account
from tests.pages import form_data, user_form_data

# Each character the email library rejects in a header, and a plain control character.
BREAKING = ["\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\x1c", "\x1d", "\x1e", "\r", "\n"]
CONTROL = ["\x00", "\x07", "\x1b", "\x7f", "\x9b"]


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("character", BREAKING + CONTROL, ids=lambda c: f"U+{ord(c):04X}")
def test_compose_refuses_a_subject_holding_a_line_break_or_control_character(
    app, auth, browser, character
):
    user_id = auth.login_operator()
    with app.app_context():
        make_account(owner=db.session.get(User, user_id))
    response = browser.post(
        "/compose",
        {"recipients": "amy@example.org", "subject": f"Hello{character}there", "body": "Hi"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Line breaks are not allowed here, nor control characters" in page
    assert f"U+{ord(character):04X}" in page
    assert _count(app, Send) == 0


def test_compose_refuses_a_csv_name_holding_a_line_separator(app, auth, browser):
    user_id = auth.login_operator()
    with app.app_context():
        make_account(owner=db.session.get(User, user_id))
    upload = "email,name\namy@example.org,Amy\u2028Bloggs\n".encode()
    response = browser.post(
        "/compose",
        {
            "recipients": "",
            "recipients_file": (io.BytesIO(upload), "people.csv"),
            "subject": "Hi",
            "body": "Hi",
        },
        content_type="multipart/form-data",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "The name contains a line break or a control character (U+2028 line separator)" in (page)
    assert _count(app, Send) == 0


@pytest.mark.parametrize("field", ["from_name", "username", "from_email"])
@pytest.mark.parametrize("character", ["\u2029", "\x85", "\x1d", "\x0b"], ids=repr)
def test_account_header_fields_refuse_line_breaks_of_every_kind(
    app, auth, browser, field, character
):
    auth.login_admin()
    value = form_data()[field]
    response = browser.post("/admin/email/system", form_data(**{field: value + character + "x"}))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    error = page[page.index(f'id="{field}-error"') :]
    assert "Line breaks are not allowed here" in error[: error.index("</p>")] or (
        field == "from_email"
    )
    assert _count(app, EmailAccount) == 0


@pytest.mark.parametrize("character", ["\u2028", "\x0c"], ids=repr)
def test_user_names_refuse_line_breaks_of_every_kind(app, auth, browser, character):
    auth.login_admin()
    response = browser.post(
        "/admin/users/new",
        user_form_data(email="new@charity.example", name=f"New{character}Person"),
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Line breaks are not allowed here" in page
    assert _count(app, User) == 1
