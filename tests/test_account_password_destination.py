"""Issue 10, item 9: the stored password only goes to the server it was typed for. Changing the
host, port, security, authentication or username needs the password again; a password is never
sent unencrypted except to a relay on this machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount
from tests.factories import SMTP_PASSWORD, SMTP_USER
from tests.pages import form_data, server_form_data
from tests.smtp_servers import SMTPServer, server_context, start_server

KEEP = {"password": "", "password_action": "keep"}


@pytest.fixture
def other_server(tls_authority, trusted_ca) -> Iterator[SMTPServer]:
    """Someone else's server (implicit TLS, AUTH offered): it records every login tried."""
    server = start_server(mode="ssl", server_context=server_context(tls_authority))
    yield server
    server.stop()


def _account(app) -> EmailAccount:
    with app.app_context():
        return db.session.scalars(select(EmailAccount)).one()


@pytest.fixture
def saved(app, auth, browser, smtp_server) -> int:
    """The single account on the real server, its password typed by whoever set it up."""
    auth.login_admin()
    response = browser.post("/admin/email/system", server_form_data(smtp_server))
    assert response.status_code == 302
    return _account(app).id


def test_moving_the_account_to_another_server_needs_the_password_again(
    app, browser, smtp_server, other_server, saved
):
    moved = server_form_data(other_server, security="ssl", **KEEP)
    response = browser.post("/admin/email/system", moved)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "You changed the port and ssl type: type the account&#39;s password again" in page
    assert _account(app).port == smtp_server.port  # nothing saved

    # Test uses the unchanged settings: the other server never sees a login.
    result = browser.post(f"/admin/email/{saved}/test").get_data(as_text=True)
    assert "235" in result
    assert other_server.recorder.logins == []
    assert smtp_server.recorder.logins == [(SMTP_USER, True)]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"username": "someone-else@charity.example"}, "username"),
        ({"auth_method": "plain"}, "authentication"),
        ({"security": "ssl"}, "ssl type"),
    ],
)
def test_each_connection_setting_needs_the_password_again(
    app, browser, smtp_server, saved, change, named
):
    page = browser.post(
        "/admin/email/system", server_form_data(smtp_server, **KEEP, **change)
    ).get_data(as_text=True)
    assert f"You changed the {named}: type the account&#39;s password again" in page


def test_with_the_password_typed_again_the_move_is_saved(app, browser, other_server, saved):
    response = browser.post(
        "/admin/email/system",
        server_form_data(other_server, security="ssl", password=SMTP_PASSWORD),
    )
    assert response.status_code == 302
    assert _account(app).port == other_server.port


def test_other_changes_keep_the_stored_password(app, browser, smtp_server, saved):
    response = browser.post(
        "/admin/email/system",
        server_form_data(smtp_server, from_name="Riverside Food Bank (office)", **KEEP),
    )
    assert response.status_code == 302
    account = _account(app)
    assert account.from_name == "Riverside Food Bank (office)" and account.has_password


def _relay(host: str, **changes: str) -> dict[str, str]:
    """A custom account on port 25 without encryption (a relay's usual settings)."""
    return form_data(
        provider="custom",
        host=host,
        port="25",
        security="none",
        daily_limit="100",
        per_minute_limit="10",
        max_recipients="10",
        **changes,
    )


def test_a_password_is_never_sent_unencrypted_over_a_network(app, auth, browser):
    auth.login_admin()
    page = browser.post(
        "/admin/email/system",
        _relay("smtp.example.org"),
    ).get_data(as_text=True)
    assert "the password would cross the network unencrypted" in page
    with app.app_context():
        assert db.session.scalars(select(EmailAccount)).all() == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_a_relay_on_this_machine_may_take_a_password_unencrypted(app, auth, browser, host):
    auth.login_admin()
    response = browser.post(
        "/admin/email/system",
        _relay(host),
    )
    assert response.status_code == 302


def test_no_password_over_no_encryption_is_fine_anywhere(app, auth, browser):
    auth.login_admin()
    response = browser.post(
        "/admin/email/system",
        _relay("relay.example.org", auth_method="none", password=""),
    )
    assert response.status_code == 302


def test_an_old_account_with_a_password_in_clear_is_not_tested(app, auth, browser):
    """Saved before the rule (straight into the database): Test refuses, sending nothing."""
    from lamplight_mail.models import Security
    from tests.factories import make_account

    auth.login_admin()
    with app.app_context():
        account = make_account(audited=True, provider="office365", host="smtp.example.org", port=25)
        account.security = Security.NONE
        db.session.commit()
        account_id = account.id
    for url in (f"/admin/email/{account_id}/test", f"/admin/email/{account_id}/test-email"):
        page = browser.post(url, {"to": "amy@example.org"}).get_data(as_text=True)
        assert "not attempted: no password is sent unencrypted" in page


def test_the_service_refuses_to_keep_the_password_for_a_new_server(app, saved, other_server):
    """Below the form too: save_account itself refuses."""
    from dataclasses import replace

    from lamplight_mail.accounts import editing
    from lamplight_mail.accounts.editing import PasswordAction, PasswordChange

    with app.app_context():
        account = db.session.get(EmailAccount, saved)
        values = editing.AccountValues(
            **{name: getattr(account, name) for name in editing.AccountValues.__dataclass_fields__}
        )
        with pytest.raises(editing.PasswordNeeded):
            editing.save_account(
                account,
                account.kind,
                replace(values, port=other_server.port),
                PasswordChange(PasswordAction.KEEP),
            )
