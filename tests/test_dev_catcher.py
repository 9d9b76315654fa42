"""The development SMTP catcher rehearses the help page (issue 12, point 4): STARTTLS and AUTH
LOGIN on 127.0.0.1 with a certificate made at first run, trusted the way make run trusts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamplight_mail.dev.smtp_catcher import (
    PASSWORD_ENV,
    DevInbox,
    ensure_certificate,
    start_catcher,
    trust_bundle,
)
from tests.pages import form_data
from tests.smtp_servers import free_port


@pytest.fixture
def catcher(app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The catcher as make run starts it, on a free port, its inbox where /dev/inbox reads."""
    folder = tmp_path / "dev-smtp"
    certificate = ensure_certificate(folder)
    monkeypatch.setenv("SSL_CERT_FILE", str(trust_bundle(certificate, folder)))
    port = free_port()
    controller = start_catcher(Path(app.instance_path) / "dev-inbox", port, certificate)
    try:
        yield port
    finally:
        controller.stop()


def _help_page_settings(port: int, **overrides: str) -> dict[str, str]:
    """The help page's Office 365 settings (TLS, login, an app password) on the catcher."""
    settings = {
        "host": "127.0.0.1",
        "port": str(port),
        "username": "office@charity.example",
        "from_email": "office@charity.example",
        "password": "an app password",
        "default_for_operators": "y",
    }
    return form_data(**{**settings, **overrides})


def _account_id(browser) -> int:
    page = browser.get("/admin/communication-settings").get_data(as_text=True)
    return int(page.split("/admin/email/")[1].split("/")[0])


def test_the_help_pages_settings_work_against_the_catcher(app, auth, browser, catcher):
    auth.login_admin()
    assert browser.post("/admin/email/system", _help_page_settings(catcher)).status_code == 302
    account_id = _account_id(browser)

    page = browser.post(f"/admin/email/{account_id}/test").get_data(as_text=True)
    assert "It worked" in page and "235" in page  # signed in after STARTTLS

    page = browser.post(
        f"/admin/email/{account_id}/test-email", {"to": "ada@example.org"}
    ).get_data(as_text=True)
    assert "It worked" in page
    inbox = DevInbox(Path(app.instance_path) / "dev-inbox")
    [name] = inbox.names()
    assert inbox.get(name).message["To"] == "ada@example.org"
    assert "Test message from Lamplight Mail" in browser.get("/dev/inbox").get_data(as_text=True)


def test_a_set_password_is_required_and_a_wrong_one_gets_the_help_pages_advice(
    app, auth, browser, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSWORD_ENV, "the app password")
    folder = tmp_path / "dev-smtp"
    certificate = ensure_certificate(folder)
    monkeypatch.setenv("SSL_CERT_FILE", str(trust_bundle(certificate, folder)))
    port = free_port()
    controller = start_catcher(tmp_path / "inbox", port, certificate)
    try:
        auth.login_admin()
        browser.post("/admin/email/system", _help_page_settings(port))
        account_id = _account_id(browser)
        page = browser.post(f"/admin/email/{account_id}/test").get_data(as_text=True)
        assert "535 5.7.3" in page and "app password" in page

        settings = _help_page_settings(port, password="the app password", password_action="replace")
        browser.post("/admin/email/system", settings)
        page = browser.post(f"/admin/email/{account_id}/test").get_data(as_text=True)
        assert "It worked" in page
    finally:
        controller.stop()


def test_signing_in_without_tls_is_refused_with_advice(app, auth, browser, catcher):
    auth.login_admin()
    browser.post("/admin/email/system", _help_page_settings(catcher, security="none"))
    page = browser.post(f"/admin/email/{_account_id(browser)}/test").get_data(as_text=True)
    assert "538 5.7.11" in page and "SSL type TLS" in page


def test_the_certificate_is_made_once(tmp_path):
    first = ensure_certificate(tmp_path)
    made = first.cert_file.read_bytes()
    assert ensure_certificate(tmp_path).cert_file.read_bytes() == made
    assert oct(first.key_file.stat().st_mode & 0o777) == "0o600"
