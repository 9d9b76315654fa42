"""Setup, login and who may open what."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import Role, User
from tests.conftest import PASSWORD


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
    assert "This field is required." in page
    assert "at least 10 characters" in page.lower()


def test_login_refuses_wrong_password_without_saying_which_part_was_wrong(auth, browser):
    auth.create_user("olive@charity.example")
    response = auth.login("olive@charity.example", "wrong password")
    assert response.status_code == 200
    assert "That email address and password do not match." in response.get_data(as_text=True)
    response = auth.login("nobody@charity.example", "wrong password")
    assert "That email address and password do not match." in response.get_data(as_text=True)


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


def _routes(app: Flask, public: bool):
    from lamplight_mail.web.access import PUBLIC_ENDPOINTS

    for rule in app.url_map.iter_rules():
        if (rule.endpoint in PUBLIC_ENDPOINTS) != public or rule.endpoint == "static":
            continue
        url = rule.rule
        for argument in rule.arguments:
            url = url.replace(f"<int:{argument}>", "1").replace(f"<{argument}>", "1")
        method = "GET" if "GET" in rule.methods else "POST"
        yield url, method


def _app_for_listing() -> Flask:
    from cryptography.fernet import Fernet

    from lamplight_mail import create_app

    return create_app(
        {"FERNET_KEYS": [Fernet.generate_key().decode()], "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    )


PRIVATE_ROUTES = sorted(set(_routes(_app_for_listing(), public=False)))


@pytest.mark.parametrize(("url", "method"), PRIVATE_ROUTES)
def test_every_private_page_sends_anonymous_users_to_login(browser, auth, url, method):
    auth.create_user("someone@charity.example")  # past first-run setup
    response = browser.get(url) if method == "GET" else browser.post(url)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


ADMIN_ONLY = re.compile(r"^/(admin|dashboard|log)(/|\.|$)")
ADMIN_ROUTES = [(url, method) for url, method in PRIVATE_ROUTES if ADMIN_ONLY.match(url)]


@pytest.mark.parametrize(("url", "method"), ADMIN_ROUTES)
def test_every_admin_page_refuses_operators(browser, auth, url, method):
    auth.login_operator()
    response = browser.get(url) if method == "GET" else browser.post(url)
    assert response.status_code == 403


def test_admin_adds_an_operator_who_can_then_log_in(auth, browser, app):
    auth.login_admin()
    response = browser.post(
        "/admin/users/new",
        {
            "email": "olive@charity.example",
            "name": "Olive",
            "role": "operator",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert "Olive" in browser.get("/admin/users").get_data(as_text=True)
    auth.logout()
    assert auth.login("olive@charity.example").status_code == 302


def test_admin_cannot_add_a_duplicate_email(auth, browser):
    auth.login_admin()
    auth.create_user("olive@charity.example")
    response = browser.post(
        "/admin/users/new",
        {
            "email": "OLIVE@charity.example",
            "name": "Olive",
            "role": "operator",
            "password": PASSWORD,
        },
    )
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
