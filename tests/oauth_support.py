"""Helpers for the OAuth 2.0 tests: registering the apps, OAuth account forms, and a sign-in
driven through the real redirect chain (app -> authorization server -> /oauth/callback)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests
from sqlalchemy import select

from lamplight_mail import crypto
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount
from tests.oauth_servers import (
    GOOGLE_CLIENT_ID,
    GOOGLE_CLIENT_SECRET,
    MS_CLIENT_ID,
    MS_CLIENT_SECRET,
    PUBLIC_URL,
    TENANT,
)
from tests.pages import form_data


def register_apps(browser) -> None:
    response = browser.post(
        "/admin/oauth",
        {
            "microsoft_tenant": TENANT,
            "microsoft_client_id": MS_CLIENT_ID,
            "microsoft_client_secret": MS_CLIENT_SECRET,
            "google_client_id": GOOGLE_CLIENT_ID,
            "google_client_secret": GOOGLE_CLIENT_SECRET,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def oauth_form(server=None, **overrides: str) -> dict[str, str]:
    """An Office 365 account form with OAuth 2.0, delegated, over SMTP (XOAUTH2)."""
    values = {
        "auth_method": "oauth2",
        "oauth_grant": "delegated",
        "transport": "smtp",
        "password": "",
    }
    if server is not None:
        values.update(host=server.host, port=str(server.port))
    values.update(overrides)
    return form_data(**values)


def sign_in(browser, connect_url: str):
    """Press "Sign in with ...", let the authorization server approve, come back to the
    callback as the browser would. Returns the callback's response."""
    started = browser.post(connect_url)
    assert started.status_code == 302, started.get_data(as_text=True)
    approved = requests.get(started.location, allow_redirects=False, timeout=10)
    assert approved.status_code == 302, approved.text
    back = urlsplit(approved.headers["Location"])
    assert f"{back.scheme}://{back.netloc}" == PUBLIC_URL and back.path == "/oauth/callback"
    return browser.get(f"{back.path}?{back.query}")


def authorize_params(response) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(response.location).query).items()}


def stored_refresh_token(app, account_id: int) -> str | None:
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        encrypted = account.refresh_token_encrypted
        return crypto.decrypt(encrypted) if encrypted else None


def accounts_in_db(app) -> list[EmailAccount]:
    with app.app_context():
        rows = db.session.scalars(select(EmailAccount).order_by(EmailAccount.id)).all()
        db.session.expunge_all()
        return list(rows)
