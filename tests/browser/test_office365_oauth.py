"""The Office 365 path with modern authentication, in Chromium against the served app and a
real worker: register the app, choose OAuth 2.0 on the single account, "Sign in with
Microsoft" (the local authorization server approves and redirects back), test the connection
(AUTH XOAUTH2) and send through the worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask

from lamplight_mail.extensions import db
from lamplight_mail.models import Role
from tests.browser.support import ADMIN, connection_works, expect, log_in, nav, write_email
from tests.factories import SMTP_USER, make_user
from tests.oauth_servers import MS_CLIENT_ID, MS_CLIENT_SECRET, TENANT
from tests.workers import LiveApp

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def live_app(
    worker_env: dict[str, str],
    oauth_env: dict[str, str],
    trusted_ca: Path,
    xoauth2_server,
    serve_app,
) -> Iterator[LiveApp]:
    """The served app and a worker pointed at the local identity platform, Graph and the
    XOAUTH2 SMTP server. Without LAMPLIGHT_MAIL_PUBLIC_URL (development) the redirect URI is
    the app's own address, which is where Chromium comes back to."""
    env = {**worker_env, **oauth_env, "SSL_CERT_FILE": str(trusted_ca)}
    env.pop("LAMPLIGHT_MAIL_PUBLIC_URL")
    with serve_app(env, xoauth2_server) as app:
        yield app


def test_an_admin_switches_office_365_to_oauth_signs_in_tests_and_sends(
    page: Page, live_app: LiveApp, app: Flask, authority, screenshot
):
    with app.app_context():
        make_user(ADMIN, role=Role.ADMIN)
        db.session.commit()
    log_in(page, ADMIN)

    # Register the organisation's app once; the page names the redirect URI to register.
    page.goto("/admin/oauth")
    expect(page.locator("#redirect-uri")).to_have_text(f"{live_app.url}/oauth/callback")
    page.get_by_label("Microsoft tenant").fill(TENANT)
    page.get_by_label("Microsoft client id").fill(MS_CLIENT_ID)
    page.get_by_label("Microsoft client secret").fill(MS_CLIENT_SECRET)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved the OAuth app registrations.")).to_be_visible()
    assert MS_CLIENT_SECRET not in page.content()

    # The single account: Office 365, OAuth 2.0, over SMTP, pointed at the local server.
    nav(page, "Communication Settings")
    page.get_by_role("link", name="Set up the single account").click()
    page.get_by_label("Host name").fill(live_app.smtp.host)
    page.get_by_label("Port", exact=True).fill(str(live_app.smtp.port))
    expect(page.get_by_label("OAuth 2.0 sign-in")).to_be_hidden()  # a password account's form
    page.get_by_label("Authentication", exact=True).select_option("oauth2")
    expect(page.get_by_label("New password")).to_be_hidden()  # nothing to type with OAuth
    page.get_by_label("OAuth 2.0 sign-in").select_option("delegated")
    page.get_by_label("Send through").select_option("smtp")
    page.get_by_label("Username").fill(SMTP_USER)
    page.get_by_label("From address").fill(SMTP_USER)
    page.get_by_label("From name").fill("Riverside Food Bank")
    page.get_by_label("Use this account for everyone without an account of their own").check()
    page.get_by_role("button", name="Save", exact=True).click()
    single = page.get_by_role("region", name="Send via a single email account for all operators")
    expect(single).to_contain_text("Waiting for sign-in")

    # Sign in with Microsoft: to the authorization server and straight back.
    single.get_by_role("button", name="Sign in with Microsoft").click()
    expect(
        page.get_by_text(f"Signed in to {SMTP_USER}: Single account ({SMTP_USER}) can send")
    ).to_be_visible()
    assert page.url.startswith(live_app.url)
    nav(page, "Communication Settings")
    expect(single).to_contain_text("Untested")  # signed in; the test proves it
    screenshot(page, "oauth-signed-in")

    expect(connection_works(page, single)).to_contain_text("235")
    nav(page, "Communication Settings")
    expect(single).to_contain_text("Ready")

    nav(page, "Compose")
    write_email(page, "Amy <amy@example.org>", "Sent with modern authentication", "Dear Amy,\n")
    page.get_by_role("button", name="Send").click()
    [received] = live_app.smtp.recorder.wait_for(1, timeout=60)
    assert received.rcpt_tos == ["amy@example.org"]
    assert received.message["Subject"] == "Sent with modern authentication"
    assert all(ok for _user, ok in live_app.smtp.recorder.logins)
    assert len(authority.grants("authorization_code")) == 1
