"""Email accounts as the help page describes them: Communication Settings, the single account,
operators' accounts, presets, the write-only password, validation, removal and the audit trail."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from lamplight_mail import crypto
from lamplight_mail.accounts import editing, health, resolution
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountHealth,
    AccountKind,
    AuditEvent,
    AuthMethod,
    EmailAccount,
    OAuthGrant,
    Role,
    Send,
    SendStatus,
    User,
)
from tests.factories import SMTP_PASSWORD, SMTP_USER, make_account, stored_text, user_by_email
from tests.pages import form_data, input_value, password_input, selected_option

NEW_PASSWORD = "replacement-app-pw-7q"


def accounts_in_db(app) -> list[EmailAccount]:
    with app.app_context():
        rows = db.session.scalars(select(EmailAccount).order_by(EmailAccount.id)).all()
        db.session.expunge_all()
        return list(rows)


def stored_password(app, account_id: int) -> str | None:
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        return crypto.decrypt(account.password_encrypted) if account.has_password else None


# --- Communication Settings ----------------------------------------------------------------


def test_communication_settings_shows_both_options_with_each_accounts_status(app, auth, browser):
    auth.login_admin()
    olive = auth.create_user("olive@charity.example", name="Olive Operator")
    bob = auth.create_user("bob@charity.example", name="Bob Operator")
    with app.app_context():
        make_account(audited=True, from_email="office@charity.example")
        make_account(audited=True, owner=user_by_email("olive@charity.example"), password=None)
        paused = make_account(audited=True, owner=user_by_email("bob@charity.example"))
        health.pause(paused, "554 5.2.0 SubmissionQuotaExceededException", "Wait for the window.")
        db.session.commit()
        paused_id = paused.id
    assert olive and bob

    page = browser.get("/admin/communication-settings").get_data(as_text=True)

    assert "Send via a single email account for all operators" in page
    assert "Send via individual operator email accounts" in page
    assert "office@charity.example" in page
    assert "Waiting for password" in page
    assert "Paused" in page and "554 5.2.0 SubmissionQuotaExceededException" in page
    assert "Wait for the window." in page
    assert f'action="/admin/email/{paused_id}/resume"' in page
    # The paused account needs the admin, so it is listed before the others.
    assert page.index("bob@charity.example") < page.index("olive@charity.example")


def test_resume_lets_a_paused_account_send_again_and_is_audited(app, auth, browser):
    auth.login_admin()
    with app.app_context():
        account = make_account(audited=True)
        health.pause(account, "535 5.7.3 Authentication unsuccessful", None)
        db.session.commit()
        account_id = account.id

    response = browser.post(f"/admin/email/{account_id}/resume")

    assert response.status_code == 302
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        assert account.health == AccountHealth.FAILING  # resumed; the last outcome stays the 535
        actions = db.session.scalars(select(AuditEvent.action)).all()
        assert "account.resumed" in actions
    again = browser.post(f"/admin/email/{account_id}/resume", follow_redirects=True)
    assert "was not paused" in again.get_data(as_text=True)


# --- presets -------------------------------------------------------------------------------


def test_a_new_form_starts_from_the_office365_preset(auth, browser):
    auth.login_admin()
    page = browser.get("/admin/email/system").get_data(as_text=True)
    assert selected_option(page, "provider") == "office365"
    assert input_value(page, "host") == "smtp.office365.com"
    assert input_value(page, "port") == "587"
    assert selected_option(page, "auth_method") == "login"
    assert selected_option(page, "security") == "tls"
    assert [input_value(page, name) for name in ("daily_limit", "per_minute_limit")] == [
        "10000",
        "30",
    ]
    assert input_value(page, "max_recipients") == "500"
    assert input_value(page, "connection_cap") == "3"


def test_fill_in_the_preset_works_without_javascript_and_keeps_what_was_typed(app, auth, browser):
    auth.login_admin()
    response = browser.post(
        "/admin/email/system",
        form_data(
            provider="gmail",
            fill_preset="Fill in the preset",
            host="typed.example.org",
            port="2525",
            from_email="office@charity.example",
            from_name="Riverside Food Bank",
            username="office@charity.example",
        ),
    )

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert selected_option(page, "provider") == "gmail"
    assert input_value(page, "host") == "smtp.gmail.com"
    assert input_value(page, "port") == "587"
    assert input_value(page, "per_minute_limit") == "60"
    assert input_value(page, "max_recipients") == "100"
    assert input_value(page, "from_email") == "office@charity.example"
    assert input_value(page, "from_name") == "Riverside Food Bank"
    assert input_value(page, "username") == "office@charity.example"
    assert "Please correct" not in page  # filling is not saving: nothing to complain about
    assert accounts_in_db(app) == []


def test_the_form_offers_instant_filling_from_a_static_script(auth, browser):
    auth.login_admin()
    page = browser.get("/admin/email/system").get_data(as_text=True)
    assert '<script src="/static/account-form.js" defer></script>' in page
    assert "<script>" not in page  # no inline script
    assert '"smtp.office365.com"' in page  # the presets, as data for the script
    script = browser.get("/static/account-form.js")
    assert script.status_code == 200
    script.close()


def test_saving_with_a_preset_and_blank_settings_uses_the_preset(app, auth, browser):
    auth.login_admin()
    response = browser.post("/admin/email/system", form_data(host="", port=""))
    assert response.status_code == 302

    [account] = accounts_in_db(app)
    assert (account.host, account.port, account.auth_method, account.security) == (
        "smtp.office365.com",
        587,
        "login",
        "tls",
    )
    assert (
        account.daily_limit,
        account.per_minute_limit,
        account.max_recipients,
        account.connection_cap,
    ) == (10_000, 30, 500, 3)


def test_preset_values_stay_editable(app, auth, browser):
    auth.login_admin()
    response = browser.post(
        "/admin/email/system",
        form_data(
            host="mail.charity.example", port="2525", daily_limit="2000", reserve_percent="20"
        ),
    )
    assert response.status_code == 302
    [account] = accounts_in_db(app)
    assert (account.host, account.port, account.daily_limit, account.reserve_percent) == (
        "mail.charity.example",
        2525,
        2000,
        20,
    )


def test_other_provider_needs_every_server_setting(app, auth, browser):
    auth.login_admin()
    response = browser.post("/admin/email/system", form_data(provider="custom"))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    for label in ("host name", "port", "recipients per 24 hours", "messages per minute"):
        assert f"Enter the {label}, or choose a provider" in page
    assert accounts_in_db(app) == []


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("host", "smtp://smtp.office365.com", "without smtp:// or https://"),
        ("host", "smtp.office365.com:587", "Put the port number in the Port field"),
        ("host", "smtp office365.com", "cannot contain spaces"),
        ("host", "smtp..office365.com", "Enter a host name such as"),
        ("host", "-smtp.example.org", "Enter a host name such as"),
        ("host", "a" * 254, "Field cannot be longer than 253 characters."),
        ("port", "0", "from 1 to 65,535"),
        ("port", "65536", "from 1 to 65,535"),
        ("port", "five-eight-seven", "Not a valid integer value."),
        ("daily_limit", "0", "from 1 to 1,000,000"),
        ("per_minute_limit", "-3", "from 1 to 10,000"),
        ("max_recipients", "lots", "Not a valid integer value."),
        ("connection_cap", "99", "from 1 to 20"),
        ("reserve_percent", "51", "from 0 to 50"),
        ("from_email", "not-an-address", "An email address must have an @-sign."),
        ("from_email", "office@charity.example\r\nBcc: all@example.org", "Line breaks"),
        ("from_name", "Food Bank\r\nBcc: all@example.org", "Line breaks are not allowed"),
        ("username", "office@charity.example\nX-Evil: 1", "Line breaks are not allowed"),
        ("password", "app\r\npassword", "Line breaks are not allowed"),
        ("from_name", "x" * 121, "Field cannot be longer than 120 characters."),
        ("auth_method", "oauth", "Not a valid choice"),
        ("security", "starttls", "Not a valid choice"),
        ("provider", "yahoo", "Not a valid choice"),
    ],
)
def test_bad_input_is_explained_next_to_the_field_and_nothing_is_lost(
    app, auth, browser, field, value, message
):
    auth.login_admin()
    response = browser.post("/admin/email/system", form_data(**{field: value}))

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'id="{field}-error"' in page
    error = page[page.index(f'id="{field}-error"') :]
    assert message in error[: error.index("</p>")]
    assert f'aria-describedby="{field}-hint {field}-error"' in page or (
        f'aria-describedby="{field}-error"' in page
    )
    if field not in ("from_name", "password"):
        assert input_value(page, "from_name") == "Riverside Food Bank"
    assert accounts_in_db(app) == []


@pytest.mark.parametrize(
    ("port", "security", "warning"),
    [
        ("465", "tls", "Port 465 normally expects SSL type SSL"),
        ("587", "ssl", "Port 587 normally expects SSL type TLS"),
    ],
)
def test_ssl_type_that_does_not_fit_the_port_is_saved_with_a_warning(
    app, auth, browser, port, security, warning
):
    auth.login_admin()
    response = browser.post(
        "/admin/email/system", form_data(port=port, security=security), follow_redirects=True
    )
    assert warning in response.get_data(as_text=True)
    [account] = accounts_in_db(app)
    assert (str(account.port), account.security.value) == (port, security)
    assert warning in browser.get("/admin/email/system").get_data(as_text=True)


# --- the write-only password ---------------------------------------------------------------


def test_the_stored_password_is_never_rendered_back(app, auth, browser):
    auth.login_admin()
    browser.post("/admin/email/system", form_data())
    pages = [
        browser.get("/admin/email/system"),
        browser.get("/admin/communication-settings"),
        # A rejected form, with the password typed again.
        browser.post("/admin/email/system", form_data(port="0", password=NEW_PASSWORD)),
    ]
    for response in pages:
        page = response.get_data(as_text=True)
        assert SMTP_PASSWORD not in page and NEW_PASSWORD not in page
    field = password_input(pages[0].get_data(as_text=True))
    assert "value=" not in field
    assert 'autocomplete="new-password"' in field
    assert "value=" not in password_input(pages[2].get_data(as_text=True))


def test_a_blank_password_keeps_the_stored_one(app, auth, browser):
    auth.login_admin()
    browser.post("/admin/email/system", form_data())
    [account] = accounts_in_db(app)

    # As the contract's client posts it (no choice made) and as the page posts it.
    browser.post("/admin/email/system", form_data(password="", daily_limit="9000"))
    browser.post(
        "/admin/email/system", form_data(password="", password_action="keep", daily_limit="8000")
    )

    assert stored_password(app, account.id) == SMTP_PASSWORD
    assert accounts_in_db(app)[0].daily_limit == 8000


def test_replacing_the_password_is_an_explicit_choice(app, auth, browser):
    auth.login_admin()
    browser.post("/admin/email/system", form_data())
    [account] = accounts_in_db(app)
    page = browser.get("/admin/email/system").get_data(as_text=True)
    assert selected_option(page, "password_action") == "keep"
    assert "Replace it with the new password typed below" in page

    # Typed (perhaps by a password manager) while "keep" is chosen: refused, not half-applied.
    refused = browser.post(
        "/admin/email/system", form_data(password=NEW_PASSWORD, password_action="keep")
    )
    assert "You typed a password without choosing to use it" in refused.get_data(as_text=True)
    assert stored_password(app, account.id) == SMTP_PASSWORD
    # "Replace" without a password.
    empty = browser.post("/admin/email/system", form_data(password="", password_action="replace"))
    assert "Type the new password" in empty.get_data(as_text=True)

    saved = browser.post(
        "/admin/email/system", form_data(password=NEW_PASSWORD, password_action="replace")
    )
    assert saved.status_code == 302
    assert stored_password(app, account.id) == NEW_PASSWORD


def test_a_typed_password_replaces_the_stored_one_when_no_choice_is_posted(app, auth, browser):
    auth.login_admin()
    browser.post("/admin/email/system", form_data())
    browser.post("/admin/email/system", form_data(password=NEW_PASSWORD))
    [account] = accounts_in_db(app)
    assert stored_password(app, account.id) == NEW_PASSWORD


def test_the_single_account_needs_its_password(app, auth, browser):
    auth.login_admin()
    response = browser.post("/admin/email/system", form_data(password=""))
    assert "password (with two-factor authentication, an app password)" in response.get_data(
        as_text=True
    )
    assert accounts_in_db(app) == []
    # A relay without authentication needs none, and keeps none.
    relay = form_data(provider="custom", host="127.0.0.1", port="1025", auth_method="none")
    relay.update(security="none", daily_limit="100", per_minute_limit="10", max_recipients="50")
    relay["password"] = ""
    assert browser.post("/admin/email/system", relay).status_code == 302
    [account] = accounts_in_db(app)
    assert account.health == AccountHealth.UNTESTED and not account.has_password


# --- individual operator accounts ----------------------------------------------------------


def test_admin_leaves_the_password_to_the_operator_who_sets_it_at_my_email(app, auth, browser):
    auth.login_admin()
    olive_id = auth.create_user("olive@charity.example", name="Olive Operator")
    new_form = browser.get("/admin/email/operators/new").get_data(as_text=True)
    assert "Olive Operator (olive@charity.example)" in new_form

    response = browser.post(
        "/admin/email/operators/new",
        form_data(
            operator_id=str(olive_id),
            username="olive@charity.example",
            from_email="olive@charity.example",
            password="",
            password_action="operator",
        ),
    )
    assert response.status_code == 302
    [account] = accounts_in_db(app)
    assert account.health == AccountHealth.WAITING_FOR_PASSWORD
    assert "Waiting for password" in browser.get("/admin/communication-settings").get_data(
        as_text=True
    )

    auth.logout()
    auth.login("olive@charity.example")
    page = browser.get("/my/email").get_data(as_text=True)
    assert "olive@charity.example" in page and "Waiting for password" in page
    # Only the password: other fields posted along are ignored.
    response = browser.post("/my/email", {"password": SMTP_PASSWORD, "host": "evil.example"})
    assert response.status_code == 302

    [account] = accounts_in_db(app)
    assert account.health == AccountHealth.UNTESTED  # saved; the next test proves it
    assert account.host == "smtp.office365.com"
    assert stored_password(app, account.id) == SMTP_PASSWORD
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "account.password_set")
        )
        assert event.actor_email == "olive@charity.example"
    assert SMTP_PASSWORD not in browser.get("/my/email").get_data(as_text=True)


def test_my_email_shows_only_the_operators_own_account(app, auth, browser):
    auth.create_user("bob@charity.example", name="Bob Operator")
    olive_id = auth.login_operator()
    with app.app_context():
        make_account(
            audited=True,
            default_for_operators=True,
            from_email="office@charity.example",
            host="shared.example.org",
        )
        make_account(
            audited=True, owner=user_by_email("bob@charity.example"), host="bob-host.example.org"
        )

    without = browser.get("/my/email").get_data(as_text=True)
    assert "You have no email account of your own" in without
    assert "single account" in without
    for other in ("office@charity.example", "shared.example.org", "bob@charity.example"):
        assert other not in without
    assert browser.post("/my/email/test").status_code == 404

    with app.app_context():
        make_account(audited=True, owner=db.session.get(User, olive_id))
    own = browser.get("/my/email").get_data(as_text=True)
    assert "olive@charity.example" in own
    for other in ("office@charity.example", "shared.example.org", "bob-host.example.org"):
        assert other not in own


def test_each_person_has_at_most_one_individual_account(app, auth, browser):
    auth.login_admin()
    olive_id = auth.create_user("olive@charity.example", name="Olive Operator")
    auth.create_user("bob@charity.example", name="Bob Operator")
    with app.app_context():
        make_account(audited=True, owner=user_by_email("olive@charity.example"))

    page = browser.get("/admin/email/operators/new").get_data(as_text=True)
    assert "Bob Operator" in page and "Olive Operator" not in page
    response = browser.post("/admin/email/operators/new", form_data(operator_id=str(olive_id)))
    assert "Not a valid choice" in response.get_data(as_text=True)
    assert len(accounts_in_db(app)) == 1
    with app.app_context(), pytest.raises(editing.AccountConflict):
        make_account(audited=True, owner=user_by_email("olive@charity.example"))


def test_there_is_only_one_single_account(app, auth, browser):
    auth.login_admin()
    browser.post("/admin/email/system", form_data())
    browser.post("/admin/email/system", form_data(from_email="other@charity.example"))
    [account] = accounts_in_db(app)
    assert account.from_email == "other@charity.example"  # the second save edited the first

    with app.app_context():
        with pytest.raises(editing.AccountConflict):
            make_account(audited=True)
        # The database holds the line too, whatever the code path.
        db.session.add(
            EmailAccount(
                kind=AccountKind.SYSTEM,
                host="h.example",
                port=587,
                auth_method="login",
                security="tls",
                from_email="x@charity.example",
                daily_limit=1,
                per_minute_limit=1,
                max_recipients=1,
            )
        )
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_an_operator_account_can_be_edited_and_handed_to_its_operator(app, auth, browser):
    auth.login_admin()
    olive_id = auth.create_user("olive@charity.example", name="Olive Operator")
    with app.app_context():
        account_id = make_account(audited=True, owner=db.session.get(User, olive_id)).id

    page = browser.get(f"/admin/email/operators/{account_id}/edit").get_data(as_text=True)
    assert selected_option(page, "operator_id") == str(olive_id)
    assert "Leave it to the operator" in page
    response = browser.post(
        f"/admin/email/operators/{account_id}/edit",
        form_data(operator_id=str(olive_id), password="", password_action="operator"),
    )
    assert response.status_code == 302
    [account] = accounts_in_db(app)
    assert account.health == AccountHealth.WAITING_FOR_PASSWORD
    # A waiting account stays waiting when the admin edits something else.
    page = browser.get(f"/admin/email/operators/{account_id}/edit").get_data(as_text=True)
    assert selected_option(page, "password_action") == "operator"


def test_admin_pages_404_for_accounts_that_do_not_exist(app, auth, browser):
    auth.login_admin()
    with app.app_context():
        system_id = make_account(audited=True).id
    assert browser.get("/admin/email/operators/999/edit").status_code == 404
    assert browser.get(f"/admin/email/operators/{system_id}/edit").status_code == 404
    assert browser.get("/admin/email/operators/999/delete").status_code == 404
    assert browser.post("/admin/email/999/test").status_code == 404
    assert browser.post("/admin/email/999/resume").status_code == 404


# --- removing ------------------------------------------------------------------------------


def test_removing_the_default_single_account_names_everyone_who_depends_on_it(app, auth, browser):
    auth.login_admin()
    for email, name in [
        ("olive@charity.example", "Olive Operator"),
        ("bob@charity.example", "Bob Ready"),
        ("carol@charity.example", "Carol Waiting"),
    ]:
        auth.create_user(email, name=name)
    with app.app_context():
        system = make_account(audited=True, default_for_operators=True)
        make_account(audited=True, owner=user_by_email("bob@charity.example"))
        make_account(audited=True, owner=user_by_email("carol@charity.example"), password=None)
        db.session.add(
            Send(
                user_id=user_by_email("olive@charity.example").id,
                account_id=system.id,
                subject="Done long ago",
                body_text="Hello",
                status=SendStatus.DONE,
                recipient_count=1,
            )
        )
        db.session.commit()
        system_id = system.id

    page = browser.get("/admin/email/system/delete").get_data(as_text=True)
    assert "Olive Operator" in page and "Carol Waiting" in page and "Ada Admin" in page
    assert "Bob Ready" not in page
    assert "cannot send email" in page

    response = browser.post("/admin/email/system/delete")
    assert response.status_code == 302
    assert "Not set up" in browser.get("/admin/communication-settings").get_data(as_text=True)
    with app.app_context():
        archived = db.session.get(EmailAccount, system_id)
        assert archived.archived_at is not None and not archived.has_password
        assert resolution.system_account() is None
        send = db.session.scalar(select(Send))
        assert send.account.label == f"Removed account ({SMTP_USER})"  # history kept
        assert resolution.resolve_sending_account(user_by_email("olive@charity.example")) is None
    # A new single account can be set up afterwards.
    assert browser.post("/admin/email/system", form_data()).status_code == 302


def test_removing_an_operator_account_says_where_their_mail_goes(app, auth, browser):
    auth.login_admin()
    auth.create_user("olive@charity.example", name="Olive Operator")
    with app.app_context():
        make_account(audited=True, default_for_operators=True, from_email="office@charity.example")
        account_id = make_account(audited=True, owner=user_by_email("olive@charity.example")).id

    page = browser.get(f"/admin/email/operators/{account_id}/delete").get_data(as_text=True)
    assert "Olive Operator" in page
    assert "go through the single account, office@charity.example, instead" in page

    assert browser.post(f"/admin/email/operators/{account_id}/delete").status_code == 302
    with app.app_context():
        olive = user_by_email("olive@charity.example")
        assert resolution.own_account(olive) is None
        assert resolution.resolve_sending_account(olive).from_email == "office@charity.example"
        make_account(audited=True, owner=olive)  # the person can be given a new account
    audit = browser.get(f"/admin/email/operators/{account_id}/edit")
    assert audit.status_code == 404


def test_an_account_with_mail_still_to_send_is_not_removed(app, auth, browser):
    auth.login_admin()
    auth.create_user("olive@charity.example", name="Olive Operator")
    with app.app_context():
        account = make_account(audited=True, owner=user_by_email("olive@charity.example"))
        db.session.add(
            Send(
                user_id=account.owner_id,
                account_id=account.id,
                subject="Newsletter",
                body_text="Hello",
                status=SendStatus.QUEUED,
                recipient_count=40,
            )
        )
        db.session.commit()
        account_id = account.id

    page = browser.get(f"/admin/email/operators/{account_id}/delete").get_data(as_text=True)
    assert "1 send still uses this account" in page
    assert "Remove the account</button>" not in page
    response = browser.post(f"/admin/email/operators/{account_id}/delete")
    assert response.status_code == 200
    assert "Wait for them to finish, or cancel them" in response.get_data(as_text=True)
    [account] = accounts_in_db(app)
    assert account.archived_at is None and account.has_password


# --- the audit trail -----------------------------------------------------------------------


def test_every_change_is_audited_with_who_and_what_but_never_the_password(app, auth, browser):
    auth.login_admin()
    browser.post("/admin/email/system", form_data())
    browser.post(
        "/admin/email/system",
        form_data(daily_limit="4000", password=NEW_PASSWORD, password_action="replace"),
    )
    browser.post("/admin/email/system/delete")

    with app.app_context():
        events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        account_events = [e for e in events if e.target_type == "email_account"]
        assert [e.action for e in account_events] == [
            "account.created",
            "account.updated",
            "account.removed",
        ]
        created, updated, _removed = account_events
        assert {e.actor_email for e in account_events} == {"admin@charity.example"}
        assert created.details["host"] == "smtp.office365.com"
        assert created.details["password"] == "(changed)"
        assert updated.details == {"daily_limit": 4000, "password": "(changed)"}
        assert "recipients per 24 hours" in updated.summary  # the form's words
    text = stored_text(app)
    assert SMTP_PASSWORD not in text and NEW_PASSWORD not in text


def test_the_form_explains_office365_app_passwords_and_the_end_of_basic_auth(auth, browser):
    auth.login_admin()
    page = browser.get("/admin/email/system").get_data(as_text=True)
    assert "app password" in page
    assert "two-factor authentication" in page
    assert "end of December 2026" in page
    assert "OAuth" in page


def test_the_overview_lists_the_first_individual_accounts_and_links_to_all(app, auth, browser):
    auth.login_admin()
    owner_ids = [
        auth.create_user(f"op{number:02}@charity.example", Role.OPERATOR) for number in range(12)
    ]
    with app.app_context():
        for owner_id in owner_ids:
            make_account(audited=True, owner=db.session.get(User, owner_id))

    overview = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert "All 12 individual accounts" in overview
    assert "op09@charity.example" in overview and "op10@charity.example" not in overview
    listing = browser.get("/admin/email/operators").get_data(as_text=True)
    assert all(f"op{number:02}@charity.example" in listing for number in range(12))


@pytest.mark.parametrize(
    ("settings", "said", "password_field"),
    [
        ({}, "You can set its password here", True),
        (
            {"auth_method": AuthMethod.NONE, "password": None},
            "to send without signing in to the server, so it has no password",
            False,
        ),
        (
            {
                "auth_method": AuthMethod.OAUTH2,
                "oauth_grant": OAuthGrant.DELEGATED,
                "password": None,
            },
            "sign in to your mailbox below",
            False,
        ),
        (
            {"auth_method": AuthMethod.OAUTH2, "oauth_grant": OAuthGrant.APP, "password": None},
            "as your organisation's app: it has no password",
            False,
        ),
    ],
    ids=["password", "none", "oauth-delegated", "oauth-app"],
)
def test_my_email_words_the_account_by_how_it_signs_in(
    app, auth, browser, settings, said, password_field
):
    """Only a password account offers to set a password: an OAuth account was told "You can
    set its password here" with no password field on the page."""
    olive_id = auth.login_operator()
    with app.app_context():
        make_account(owner=db.session.get(User, olive_id), **settings)
    page = " ".join(browser.get("/my/email").get_data(as_text=True).split()).replace("&#39;", "'")
    assert said in page
    assert ("set its password" in page) == password_field
    assert ('name="password"' in page) == password_field


def _users_column(page: str) -> dict[str, str]:
    """The users list's "Email account" cell by user name."""
    rows = re.findall(r"<tr>\s*<td>([^<]*)</td>.*?</td>.*?</td>\s*<td>(.*?)</td>", page, re.S)
    return {name: " ".join(cell.split()) for name, cell in rows}


def test_the_users_list_names_the_account_each_user_sends_through(app, auth, browser):
    """An admin without an account of their own, sending through the default single account,
    was listed with "Email account: none"."""
    auth.login_admin()
    olive_id = auth.create_user("olive@charity.example", name="Olive Operator")
    auth.create_user("rory@charity.example", name="Rory Operator")
    with app.app_context():
        shared = make_account(default_for_operators=False, from_email="office@charity.example")
        make_account(owner=db.session.get(User, olive_id), password=None)
        shared_id = shared.id
    assert _users_column(browser.get("/admin/users").get_data(as_text=True)) == {
        "Ada Admin": "none",
        "Olive Operator": "waiting for password",
        "Rory Operator": "none",
    }
    with app.app_context():
        db.session.get(EmailAccount, shared_id).default_for_operators = True
        db.session.commit()
    assert _users_column(browser.get("/admin/users").get_data(as_text=True)) == {
        "Ada Admin": "the single account (default)",
        "Olive Operator": "waiting for password (sends through the single account meanwhile)",
        "Rory Operator": "the single account (default)",
    }
