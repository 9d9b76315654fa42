"""Steps the browser tests share: signing in and out as a person would, and data set up through
the services when a test is about something else than setting it up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from lamplight_mail.models import Role
from tests.factories import PASSWORD, make_account, make_user
from tests.smtp_servers import SMTPServer

try:
    from playwright.sync_api import expect
except ImportError:  # the `chromium` fixture skips every test (fails them under CI), saying why
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

ADMIN = "ada@charity.example"
OPERATOR = "olive@charity.example"


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You have logged out.")).to_be_visible()


def nav(page: Page, label: str) -> None:
    """Follow a link of the main navigation and check it led to its page."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()
    expect(page.get_by_role("link", name=label)).to_have_attribute("aria-current", "page")


def write_email(page: Page, recipients: str, subject: str, body: str) -> None:
    """Fill in Compose's recipients, subject and message."""
    page.get_by_label("Recipients", exact=True).fill(recipients)
    page.get_by_label("Subject", exact=True).fill(subject)
    page.get_by_label("Message", exact=True).fill(body)


def connection_works(page: Page, account: Locator) -> Locator:
    """Press the account's "Test connection" and see it work: the result, with the server's
    answer."""
    account.get_by_role("button", name="Test connection").click()
    result = page.get_by_role("status")
    expect(result.get_by_role("heading", name="It worked")).to_be_visible()
    return result


def seed_people_and_account(app: Flask, smtp_server: SMTPServer, *, daily_limit: int) -> str:
    """An admin, an operator and the single account (the default for everyone) sending through
    `smtp_server`; returns the account's label as pages show it."""
    with app.app_context():
        make_user(ADMIN, role=Role.ADMIN)
        make_user(OPERATOR, role=Role.OPERATOR)
        # Figures the account form accepts, so an admin can edit the account in the test.
        account = make_account(
            smtp_server, default_for_operators=True, daily_limit=daily_limit, per_minute_limit=30
        )
        return account.label
