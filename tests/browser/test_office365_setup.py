"""The help page's flow in Chromium: first-run setup, log in, Communication Settings, the Office
365 preset, the app password, save, test connection and the server's answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser.support import ADMIN, connection_works, expect, log_in, log_out, nav
from tests.factories import PASSWORD, SMTP_PASSWORD, SMTP_USER

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.workers import LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_admin_sets_up_office_365_with_an_app_password_and_tests_it(
    page: Page, live_app: LiveApp, screenshot
):
    # First run: the first visit leads to setup, which creates the admin.
    page.goto("/")
    expect(page.get_by_role("heading", name="Set up Lamplight Mail")).to_be_visible()
    page.get_by_label("Name").fill("Ada Admin")
    page.get_by_label("Email address").fill(ADMIN)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create admin").click()
    expect(page.get_by_text("Ada Admin (admin)")).to_be_visible()
    log_out(page)
    log_in(page, ADMIN)

    nav(page, "Communication Settings")
    expect(page.get_by_role("heading", name="Communication Settings", level=1)).to_be_visible()
    page.get_by_role("link", name="Set up the single account").click()

    # Choosing a provider fills in its settings straight away (account-form.js).
    provider, host = page.get_by_label("Provider"), page.get_by_label("Host name")
    provider.select_option("gmail")
    expect(host).to_have_value("smtp.gmail.com")
    provider.select_option("office365")
    expect(host).to_have_value("smtp.office365.com")
    expect(page.get_by_label("Port", exact=True)).to_have_value("587")
    expect(page.get_by_label("Authentication", exact=True)).to_have_value("login")
    expect(page.get_by_label("SSL type", exact=True)).to_have_value("tls")
    expect(page.get_by_label("Recipients per 24 hours")).to_have_value("10000")

    # Office 365's settings, pointed at the local test server (STARTTLS, then AUTH LOGIN).
    host.fill(live_app.smtp.host)
    page.get_by_label("Port", exact=True).fill(str(live_app.smtp.port))
    page.get_by_label("SSL type", exact=True).select_option("tls")
    page.get_by_label("Username").fill(SMTP_USER)
    page.get_by_label("New password").fill(SMTP_PASSWORD)
    page.get_by_label("From address").fill(SMTP_USER)
    page.get_by_label("From name").fill("Riverside Food Bank")
    page.get_by_label("Use this account for everyone without an account of their own").check()
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_text(f"Saved Single account ({SMTP_USER}).")).to_be_visible()
    single = page.get_by_role("region", name="Send via a single email account for all operators")
    expect(single).to_contain_text(f"{live_app.smtp.host}:{live_app.smtp.port}, SSL type TLS")
    expect(single).to_contain_text("Untested")  # saved, not yet proven
    screenshot(page, "communication-settings")

    expect(connection_works(page, single)).to_contain_text("235 2.7.0 Authentication successful")
    screenshot(page, "test-connection")
    # The server saw one sign-in with the app password, and nothing was sent.
    assert live_app.smtp.recorder.logins == [(SMTP_USER, True)]
    assert live_app.smtp.recorder.messages == []

    # The password is write-only: the form never sends it back to the browser.
    page.get_by_role("link", name=f"Back to Single account ({SMTP_USER})").click()
    expect(page.locator(".status").first).to_have_text("Ready")  # the test proved it
    expect(page.get_by_label("Password", exact=True)).to_have_value("keep")
    assert SMTP_PASSWORD not in page.content()
