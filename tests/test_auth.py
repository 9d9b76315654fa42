"""Setup, login and who may open what."""

from __future__ import annotations

import re

from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import Role, User
from tests.factories import PASSWORD
from tests.pages import user_form_data


def test_first_visit_leads_to_setup_which_creates_the_first_admin_then_disappears(browser, app):
    assert browser.get("/").headers["Location"].endswith("/setup")
    assert browser.get("/login").headers["Location"].endswith("/setup")

    response = browser.post(
        "/setup",
        {"email": "Ada@Charity.Example", "name": "Ada", "password": PASSWORD, "confirm": PASSWORD},
    )
    assert response.status_code == 302

    with app.app_context():
        admin = db.session.scalar(select(User))
        assert (admin.email, admin.role) == ("ada@charity.example", Role.ADMIN)
        assert PASSWORD not in admin.password_hash
    assert browser.get("/setup").status_code == 404
    assert browser.get("/admin/users").status_code == 200  # logged in as the new admin


def test_setup_explains_bad_input_next_to_the_fields(browser):
    response = browser.post(
        "/setup", {"email": "not-an-address", "name": "", "password": "short", "confirm": "other"}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "An email address must have an @-sign." in page
    assert "Enter a name." in page and "This field is required." not in page
    assert "at least 10 characters" in page.lower()


def test_login_refuses_wrong_password_without_saying_which_part_was_wrong(auth, browser):
    auth.create_user("olive@charity.example")
    response = auth.login("olive@charity.example", "wrong password")
    assert response.status_code == 200
    assert "That email address and password do not match." in response.get_data(as_text=True)
    response = auth.login("nobody@charity.example", "wrong password")
    assert "That email address and password do not match." in response.get_data(as_text=True)


def test_an_email_holding_a_nul_character_is_simply_not_a_user(auth, browser):
    """PostgreSQL cannot compare text holding NUL: hypothesis found it as a 500."""
    auth.create_user("olive@charity.example")
    response = auth.login("olive\x00@charity.example", "wrong password")
    assert response.status_code == 200


def test_login_ignores_an_offsite_next_parameter(auth, browser):
    auth.create_user("olive@charity.example")
    response = browser.post(
        "/login?next=https://evil.example/",
        {"email": "olive@charity.example", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/"


def test_forms_without_a_csrf_token_are_refused(auth, browser):
    auth.create_user("olive@charity.example")
    response = browser.client.post(
        "/login", data={"email": "olive@charity.example", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert "try again" in response.get_data(as_text=True)


# Who may open which page, for every route: tests/test_authorisation_matrix.py.


def test_admin_adds_an_operator_who_can_then_log_in(auth, browser, app):
    auth.login_admin()
    response = browser.post("/admin/users/new", user_form_data())
    assert response.status_code == 302
    assert "Olive" in browser.get("/admin/users").get_data(as_text=True)
    auth.logout()
    assert auth.login("olive@charity.example").status_code == 302


def test_admin_cannot_add_a_duplicate_email(auth, browser):
    auth.login_admin()
    auth.create_user("olive@charity.example")
    response = browser.post("/admin/users/new", user_form_data(email="OLIVE@charity.example"))
    assert response.status_code == 200
    assert "already exists" in response.get_data(as_text=True)


def test_the_only_admin_cannot_demote_themselves(auth, browser):
    admin_id = auth.login_admin()
    response = browser.post(
        f"/admin/users/{admin_id}/edit",
        {"email": "admin@charity.example", "name": "Ada", "role": "operator", "password": ""},
    )
    assert response.status_code == 200
    assert "only admin" in response.get_data(as_text=True)


def test_valid_fields_are_not_announced_as_invalid(browser):
    page = browser.get("/setup").get_data(as_text=True)
    assert "aria-invalid" not in page
    assert '"None"' not in page
    response = browser.post(
        "/setup", {"email": "bad", "name": "Ada", "password": PASSWORD, "confirm": PASSWORD}
    )
    page = response.get_data(as_text=True)
    assert 'aria-invalid="true"' in page
    assert 'aria-describedby="email-error"' in page


def _autocomplete(page: str) -> dict[str, str | None]:
    """Each password input's (and the log-in email's) autocomplete, by the input's name."""
    found = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'name="([^"]*)"', tag)
        if name and ('type="password"' in tag or name[1] == "email"):
            value = re.search(r'autocomplete="([^"]*)"', tag)
            found[name[1]] = value[1] if value else None
    return found


def test_password_managers_fill_only_the_log_in_with_the_users_own_password(app, auth, browser):
    """A password manager fills `current-password` fields with the password saved for the
    site, which is the admin's own: only the log-in form may ask for it. Every form that sets
    a password (setup, a user's, an email account's) asks for a new one."""
    assert _autocomplete(browser.get("/setup").get_data(as_text=True)) == {
        "email": None,
        "password": "new-password",
        "confirm": "new-password",
    }
    admin_id = auth.create_user("admin@charity.example", Role.ADMIN, "Ann Admin")
    assert _autocomplete(browser.get("/login").get_data(as_text=True)) == {
        "email": "username",
        "password": "current-password",
    }
    auth.login("admin@charity.example")
    other = auth.create_user("olive@charity.example")
    for url in ("/admin/users/new", f"/admin/users/{other}/edit", f"/admin/users/{admin_id}/edit"):
        assert _autocomplete(browser.get(url).get_data(as_text=True))["password"] == (
            "new-password"
        ), url
    for url in ("/admin/email/system", "/admin/email/operators/new", "/admin/oauth"):
        fields = _autocomplete(browser.get(url).get_data(as_text=True))
        assert fields and set(fields.values()) == {"new-password"}, (url, fields)


def _summary(page: str) -> list[str]:
    summary = re.search(r'<div class="error-summary".*?</ul>', page, re.S)[0]
    return [re.sub(r"<[^>]+>", "", item) for item in re.findall(r"<li>(.*?)</li>", summary)]


def test_the_error_summary_follows_the_form_and_says_a_short_password_once(auth, browser):
    """The summary listed Email before Name, the reverse of the form, and a short password got
    WTForms's "Field must be between 10 and 500 characters long." under the hint "At least 10
    characters."."""
    response = browser.post(
        "/setup", {"email": "bad", "name": "", "password": "short", "confirm": "short"}
    )
    page = response.get_data(as_text=True)
    assert [item.split(":")[0] for item in _summary(page)] == ["Name", "Email address", "Password"]
    assert "Password: Use at least 10 characters." in _summary(page)
    assert "Field must be between" not in page

    auth.login_admin()
    page = browser.post(
        "/admin/users/new",
        {"email": "bad", "name": "", "role": "operator", "password": "short"},
    ).get_data(as_text=True)
    assert [item.split(":")[0] for item in _summary(page)] == ["Name", "Email address", "Password"]
    assert "Password: Use at least 10 characters." in _summary(page)
    assert "Field must be between" not in page
