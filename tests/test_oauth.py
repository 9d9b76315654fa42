"""OAuth 2.0 (modern authentication): the app registrations page, OAuth accounts on the form,
delegated sign-in through the real redirect chain, and access tokens shared through Redis."""

from __future__ import annotations

import multiprocessing

import pytest
from sqlalchemy import select

from lamplight_mail import crypto
from lamplight_mail.accounts import health
from lamplight_mail.extensions import db
from lamplight_mail.models import AuditEvent, EmailAccount, OAuthRegistration
from lamplight_mail.oauth import tokens
from lamplight_mail.oauth.providers import ErrorKind
from tests.factories import redis_values, stored_text
from tests.oauth_servers import (
    GOOGLE_CLIENT_SECRET,
    MS_CLIENT_ID,
    MS_CLIENT_SECRET,
    PUBLIC_URL,
    TENANT,
)
from tests.oauth_support import (
    accounts_in_db,
    authorize_params,
    oauth_form,
    register_apps,
    sign_in,
    stored_refresh_token,
)
from tests.workers import fetch_access_token

pytestmark = pytest.mark.oauth

spawn = multiprocessing.get_context("spawn")
PROCESSES = 10
PROCESS_SECONDS = 120  # for ten processes to start on a busy two-core machine


# --- /admin/oauth --------------------------------------------------------------------------


def test_the_registrations_page_shows_the_redirect_uri_and_the_steps(admin, browser):
    page = browser.get("/admin/oauth").get_data(as_text=True)
    assert f"{PUBLIC_URL}/oauth/callback" in page
    for step in (
        "App registrations",
        "SMTP.Send",
        "offline_access",
        "Mail.Send",
        "Grant admin",
        "https://mail.google.com/",
        "New-ServicePrincipal",
    ):
        assert step in page, step


def test_client_secrets_are_stored_encrypted_write_only_and_kept_when_blank(app, admin, browser):
    register_apps(browser)
    page = browser.get("/admin/oauth").get_data(as_text=True)
    assert MS_CLIENT_SECRET not in page and GOOGLE_CLIENT_SECRET not in page
    assert MS_CLIENT_ID in page and TENANT in page
    assert "A Microsoft client secret is stored" in page

    # A save with blank secrets changes the id and keeps both secrets.
    response = browser.post(
        "/admin/oauth",
        {
            "microsoft_tenant": TENANT,
            "microsoft_client_id": "other-client",
            "google_client_id": "g",
        },
    )
    assert response.status_code == 302
    with app.app_context():
        registration = db.session.scalar(select(OAuthRegistration))
        assert registration.microsoft_client_id == "other-client"
        assert crypto.decrypt(registration.microsoft_client_secret_encrypted) == MS_CLIENT_SECRET
        assert crypto.decrypt(registration.google_client_secret_encrypted) == GOOGLE_CLIENT_SECRET
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "oauth.registration_updated")
        ).all()
        assert audit[0].details["microsoft_client_secret"] is True
    text = stored_text(app)
    assert MS_CLIENT_SECRET not in text and GOOGLE_CLIENT_SECRET not in text


def test_a_bad_tenant_is_refused_on_the_form(admin, browser):
    response = browser.post("/admin/oauth", {"microsoft_tenant": "https://evil/x"})
    assert response.status_code == 200
    assert "Directory (tenant) ID" in response.get_data(as_text=True)


def test_operators_cannot_open_the_registrations(auth, browser):
    auth.login_operator()
    assert browser.get("/admin/oauth").status_code == 403


# --- OAuth accounts on the form ------------------------------------------------------------


def test_an_oauth_account_waits_for_sign_in_and_keeps_no_password(app, admin, browser):
    register_apps(browser)
    response = browser.post("/admin/email/system", oauth_form(password="leftover"))
    assert response.status_code == 302, response.get_data(as_text=True)
    [account] = accounts_in_db(app)
    assert account.auth_method == "oauth2" and account.oauth_grant == "delegated"
    assert account.password_encrypted is None
    page = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert "Waiting for sign-in" in page
    assert "Sign in with Microsoft" in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {
                "provider": "custom",
                "host": "smtp.example.org",
                "port": "587",
                "daily_limit": "10",
                "per_minute_limit": "1",
                "max_recipients": "1",
            },
            "OAuth 2.0 needs a provider",
        ),
        ({"provider": "gmail", "transport": "graph"}, "Microsoft Graph is for Microsoft"),
        ({"oauth_grant": "sideways"}, "Choose how the account signs in"),
    ],
)
def test_oauth_settings_that_cannot_work_are_refused(admin, browser, overrides, message):
    response = browser.post("/admin/email/system", oauth_form(**overrides))
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)


def test_only_the_single_account_may_send_as_the_app(app, auth, admin, browser):
    operator_id = auth.create_user("olive@charity.example")
    response = browser.post(
        "/admin/email/operators/new",
        oauth_form(oauth_grant="app", operator_id=str(operator_id)),
    )
    assert response.status_code == 200
    assert "Only the single account" in response.get_data(as_text=True)
    assert accounts_in_db(app) == []


# --- delegated sign-in ---------------------------------------------------------------------


def test_admin_signs_in_with_microsoft_and_the_refresh_token_is_stored_encrypted(
    app, admin, browser, authority
):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form())
    [account] = accounts_in_db(app)

    started = browser.post(f"/admin/email/{account.id}/connect")
    assert started.status_code == 302
    assert started.location.startswith(f"{authority.url}/{TENANT}/oauth2/v2.0/authorize?")
    params = authorize_params(started)
    assert params["client_id"] == MS_CLIENT_ID
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["redirect_uri"] == f"{PUBLIC_URL}/oauth/callback"
    assert params["scope"] == "https://outlook.office.com/SMTP.Send offline_access"
    assert params["state"]

    done = sign_in(browser, f"/admin/email/{account.id}/connect")
    assert done.status_code == 302
    page = browser.get(done.location).get_data(as_text=True)
    assert "Signed in" in page

    [refresh] = list(authority.refresh_tokens)
    assert stored_refresh_token(app, account.id) == refresh
    assert refresh not in stored_text(app)
    assert refresh not in page
    [account] = accounts_in_db(app)
    assert account.health.value == "untested"
    # The token endpoint saw the PKCE verifier and the same redirect URI.
    [exchange] = authority.grants("authorization_code")
    assert exchange["code_verifier"] and exchange["redirect_uri"] == f"{PUBLIC_URL}/oauth/callback"


def test_a_callback_state_is_used_once_and_only_from_the_browser_that_started(
    app, admin, browser, authority, client
):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form())
    [account] = accounts_in_db(app)
    started = browser.post(f"/admin/email/{account.id}/connect")
    import requests

    approved = requests.get(started.location, allow_redirects=False, timeout=10)
    callback = approved.headers["Location"].removeprefix(PUBLIC_URL)
    assert browser.get(callback).status_code == 302
    replay = browser.get(callback, follow_redirects=True).get_data(as_text=True)
    assert "already used" in replay
    assert len(authority.grants("authorization_code")) == 1


def test_an_operator_signs_in_to_their_own_account_from_my_email(app, auth, browser, authority):
    auth.login_admin()
    register_apps(browser)
    operator_id = auth.create_user("olive@charity.example")
    response = browser.post(
        "/admin/email/operators/new",
        oauth_form(
            operator_id=str(operator_id),
            username="olive@charity.example",
            from_email="olive@charity.example",
        ),
    )
    assert response.status_code == 302
    auth.logout()
    auth.login("olive@charity.example")
    page = browser.get("/my/email").get_data(as_text=True)
    assert "Waiting for sign-in" in page and "Sign in with Microsoft" in page
    assert 'name="password"' not in page

    done = sign_in(browser, "/my/email/connect")
    assert done.location.endswith("/my/email")
    assert "Signed in" in browser.get("/my/email").get_data(as_text=True)
    [account] = accounts_in_db(app)
    assert account.health.value == "untested"
    [request] = authority.authorize_requests
    assert request["login_hint"] == "olive@charity.example"


def test_an_operator_cannot_sign_in_for_someone_else(auth, browser):
    auth.login_operator()
    assert browser.post("/admin/email/1/connect").status_code == 403
    assert browser.post("/my/email/connect").status_code == 404


def test_google_sign_in_asks_for_offline_access_to_mail(app, admin, browser, authority):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form(provider="gmail"))
    [account] = accounts_in_db(app)
    started = browser.post(f"/admin/email/{account.id}/connect")
    assert started.location.startswith(authority.google_auth_url)
    params = authorize_params(started)
    assert params["scope"] == "https://mail.google.com/"
    assert params["access_type"] == "offline"
    sign_in(browser, f"/admin/email/{account.id}/connect")
    assert stored_refresh_token(app, account.id) in authority.refresh_tokens


def test_a_refused_consent_is_explained(app, admin, browser, authority):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form())
    [account] = accounts_in_db(app)
    authority.authorize_error = (
        "consent_required",
        "AADSTS65001: The user or administrator has not consented to use the application.",
    )
    done = sign_in(browser, f"/admin/email/{account.id}/connect")
    page = browser.get(done.location).get_data(as_text=True)
    assert "AADSTS65001" in page and "Grant admin consent" in page
    assert stored_refresh_token(app, account.id) is None


def test_sign_in_without_a_registration_says_what_to_do(app, admin, browser):
    browser.post("/admin/email/system", oauth_form())
    [account] = accounts_in_db(app)
    page = browser.post(f"/admin/email/{account.id}/connect", follow_redirects=True)
    assert "No Microsoft app is registered" in page.get_data(as_text=True)


# --- access tokens -------------------------------------------------------------------------


def _signed_in_account(app, browser, **form) -> int:
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form(**form))
    [account] = accounts_in_db(app)
    sign_in(browser, f"/admin/email/{account.id}/connect")
    return account.id


@pytest.mark.slow
def test_tokens_are_cached_encrypted_and_ten_worker_processes_refresh_once(
    app, app_config, admin, browser, authority, redis_client
):
    account_id = _signed_in_account(app, browser)
    # Ten processes, each with its own app, all asking at once for a token none has yet.
    with spawn.Manager() as manager, spawn.Pool(PROCESSES) as pool:
        barrier = manager.Barrier(PROCESSES, timeout=PROCESS_SECONDS)
        answers = pool.starmap(
            fetch_access_token, [(app_config, account_id, barrier)] * PROCESSES, chunksize=1
        )
    pids, got = zip(*answers, strict=True)
    assert len(set(pids)) == PROCESSES
    assert len(set(got)) == 1
    assert len(authority.grants("refresh_token")) == 1
    assert authority.is_live(got[0], "https://outlook.office.com/SMTP.Send")
    stored = b"".join(redis_client.get(key) or b"" for key in redis_client.keys("*"))
    assert got[0].encode() not in stored
    # Microsoft rotated the refresh token: the new one is kept.
    assert stored_refresh_token(app, account_id) in authority.refresh_tokens


def test_an_expired_cache_entry_is_refreshed(app, admin, browser, authority, redis_client):
    account_id = _signed_in_account(app, browser)
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        first = tokens.access_token(account)
        tokens.forget(account_id)
        second = tokens.access_token(account)
    assert first != second and authority.is_live(second)
    assert len(authority.grants("refresh_token")) == 2


def _token_failure(app, account_id: int) -> tokens.TokenFailure:
    """Why the account's access token could not be had (the test fails if it could)."""
    with app.app_context(), pytest.raises(tokens.TokenFailure) as failure:
        tokens.access_token(db.session.get(EmailAccount, account_id))
    return failure.value


def test_a_revoked_grant_asks_for_a_new_sign_in(app, admin, browser, authority):
    account_id = _signed_in_account(app, browser)
    authority.revoke()
    failure = _token_failure(app, account_id)
    assert failure.kind == ErrorKind.SIGN_IN_AGAIN
    assert "AADSTS70008" in failure.answer
    assert "Sign in again" in failure.hint


def test_google_invalid_grant_is_explained(app, admin, browser, authority):
    account_id = _signed_in_account(app, browser, provider="gmail")
    authority.revoke()
    failure = _token_failure(app, account_id)
    assert failure.answer == "invalid_grant: Token has been expired or revoked."
    assert "7 days" in failure.hint


def test_the_app_grant_uses_client_credentials(app, admin, browser, authority):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form(oauth_grant="app"))
    [account] = accounts_in_db(app)
    assert account.health.value == "untested"
    with app.app_context():
        token = tokens.access_token(db.session.get(EmailAccount, account.id))
    assert authority.is_live(token, "https://outlook.office365.com/.default")
    [grant] = authority.grants("client_credentials")
    assert grant["scope"] == "https://outlook.office365.com/.default"


def test_an_invalid_client_secret_is_explained(app, admin, browser, authority):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form(oauth_grant="app"))
    [account] = accounts_in_db(app)
    authority.script_invalid_client_secret()
    failure = _token_failure(app, account.id)
    assert failure.kind == ErrorKind.ADMIN_FIX
    assert "AADSTS7000215" in failure.answer and "Secret ID" in failure.hint


def test_keys_rotate_covers_refresh_tokens_and_client_secrets(
    app, app_config, admin, browser, authority, make_app
):
    from cryptography.fernet import Fernet

    account_id = _signed_in_account(app, browser)
    refresh = stored_refresh_token(app, account_id)
    new_key = Fernet.generate_key().decode()
    rotating = make_app({**app_config, "FERNET_KEYS": [new_key, *app_config["FERNET_KEYS"]]})
    result = rotating.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "1 refresh token(s), 2 client secret(s)" in result.output

    with make_app({**app_config, "FERNET_KEYS": [new_key]}).app_context():  # old key dropped
        account = db.session.get(EmailAccount, account_id)
        registration = db.session.scalar(select(OAuthRegistration))
        assert crypto.decrypt(account.refresh_token_encrypted) == refresh
        assert crypto.decrypt(registration.microsoft_client_secret_encrypted) == MS_CLIENT_SECRET
        assert crypto.decrypt(registration.google_client_secret_encrypted) == GOOGLE_CLIENT_SECRET


# --- Office 365 on a password: the notice and the one-click switch ---------------------------


def test_office365_password_accounts_get_the_notice_and_switch_in_one_click(
    app, auth, admin, browser, authority
):
    from tests.pages import form_data

    register_apps(browser)
    browser.post("/admin/email/system", form_data(from_name="Riverside Food Bank"))
    [before] = accounts_in_db(app)
    settings = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert "off at the end of December 2026" in settings
    assert f"Switch {before.from_email} to OAuth 2.0" in settings

    response = browser.post(f"/admin/email/{before.id}/switch-to-oauth")
    assert response.status_code == 302
    [after] = accounts_in_db(app)
    assert after.auth_method == "oauth2" and after.oauth_grant == "delegated"
    assert after.transport == "smtp" and after.password_encrypted is None
    for kept in (
        "host",
        "port",
        "security",
        "username",
        "from_email",
        "from_name",
        "daily_limit",
        "per_minute_limit",
        "max_recipients",
        "default_for_operators",
    ):
        assert getattr(after, kept) == getattr(before, kept), kept
    page = browser.get(response.location).get_data(as_text=True)
    assert "Waiting for sign-in" in page and "Sign in with Microsoft" in page
    assert "Switch " not in page

    sign_in(browser, f"/admin/email/{after.id}/connect")
    assert accounts_in_db(app)[0].health.value == "untested"


# --- a revoked grant pauses the account; signing in again resumes it ------------------------


def test_a_paused_grant_offers_sign_in_again_to_admin_and_owner_and_signing_in_resumes(
    app, auth, browser, authority
):
    auth.login_admin()
    register_apps(browser)
    operator_id = auth.create_user("olive@charity.example")
    browser.post(
        "/admin/email/operators/new",
        oauth_form(
            operator_id=str(operator_id),
            from_email="olive@charity.example",
            username="olive@charity.example",
        ),
    )
    [account] = accounts_in_db(app)
    sign_in(browser, f"/admin/email/{account.id}/connect")
    authority.revoke()
    with app.app_context():
        row = db.session.get(EmailAccount, account.id)
        with pytest.raises(tokens.TokenFailure) as failure:
            tokens.access_token(row)
        health.pause(row, failure.value.answer, failure.value.hint)  # as the job does
        db.session.commit()

    settings = browser.get("/admin/communication-settings").get_data(as_text=True)
    assert "Paused" in settings and "AADSTS70008" in settings
    assert "Sign in again with Microsoft" in settings
    auth.logout()
    auth.login("olive@charity.example")
    mine = browser.get("/my/email").get_data(as_text=True)
    assert "Sign in again with Microsoft" in mine and "An admin resumes" not in mine

    sign_in(browser, "/my/email/connect")
    [account] = accounts_in_db(app)
    assert account.paused_at is None and account.health.value == "untested"
    assert stored_refresh_token(app, account.id) in authority.refresh_tokens


# --- the secret-leak sweep ------------------------------------------------------------------


def test_no_token_or_client_secret_leaks_into_pages_database_redis_logs_or_audit(
    app, auth, browser, authority, redis_client, capsys
):
    auth.login_admin()
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form())
    [account] = accounts_in_db(app)
    started = browser.post(f"/admin/email/{account.id}/connect")
    verifier_page = started.get_data(as_text=True)
    sign_in(browser, f"/admin/email/{account.id}/connect")
    with app.app_context():
        access = tokens.access_token(db.session.get(EmailAccount, account.id))
    authority.revoke()
    with app.app_context():
        tokens.forget(account.id)  # the cached token would serve until it expires
        row = db.session.get(EmailAccount, account.id)
        with pytest.raises(tokens.TokenFailure) as failure:
            tokens.access_token(row)
        health.pause(row, failure.value.answer, failure.value.hint)  # as the job does
        db.session.commit()

    secrets_seen = [MS_CLIENT_SECRET, GOOGLE_CLIENT_SECRET, access]
    secrets_seen += [r["refresh_token"] for r in authority.grants("refresh_token")]
    secrets_seen += [r["code_verifier"] for r in authority.grants("authorization_code")]
    secrets_seen += [r["code"] for r in authority.grants("authorization_code")]
    assert len(secrets_seen) >= 6

    pages = verifier_page + "".join(
        browser.get(path).get_data(as_text=True)
        for path in (
            "/admin/communication-settings",
            "/admin/email/system",
            "/admin/oauth",
            "/admin/audit",
            "/log",
            "/dashboard",
        )
    )
    stored = stored_text(app)
    in_redis = b"\n".join(redis_values(redis_client))
    logs = capsys.readouterr()
    for secret in secrets_seen:
        assert secret not in pages
        assert secret not in stored
        assert secret.encode() not in in_redis
        assert secret not in logs.out and secret not in logs.err
