"""Delegated sign-in: the authorization-code flow with PKCE (S256) and state.

`begin` makes the provider's authorize URL and remembers, in Redis for ten minutes and
encrypted, which account and person the sign-in is for and the PKCE verifier; the state names
that record and is used once. `complete` exchanges the code for tokens and keeps only the
refresh token, encrypted. Callers commit. No request objects: the views pass what they need.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import redis
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuthError
from flask import current_app

from lamplight_mail import audit, crypto
from lamplight_mail.accounts import health, resolution
from lamplight_mail.extensions import get_redis
from lamplight_mail.models import EmailAccount, User, utcnow
from lamplight_mail.oauth import providers, registration, tokens

log = logging.getLogger(__name__)

PENDING_SECONDS = 600
_UNREADABLE_SECRET = (
    "The stored client secret cannot be decrypted with the configured keys.",
    "Enter the client secret again under OAuth apps.",
)


class SignInFailed(Exception):
    """Why the sign-in did not complete, and what to do; safe to show."""

    def __init__(self, answer: str, hint: str | None = None) -> None:
        self.answer = answer
        self.hint = hint
        super().__init__(answer)


def _pending_key(state: str) -> str:
    return f"{tokens.KEY_PREFIX}:signin:{state}"


def begin(account: EmailAccount, user: User, redirect_uri: str, return_to: str) -> tuple[str, str]:
    """The provider's authorize URL for signing in to `account`, and its state. Raises
    SignInFailed when the organisation's app is not registered with the provider."""
    try:
        client = registration.client(account.oauth_provider)
    except registration.NotRegistered as error:
        raise SignInFailed(str(error)) from None
    except crypto.SecretUnreadable:
        raise SignInFailed(*_UNREADABLE_SECRET) from None
    verifier = generate_token(64)
    session = tokens.session_for(
        client,
        scope=providers.scopes(account),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    url, state = session.create_authorization_url(
        providers.authorize_url(client.provider, client.tenant),
        code_verifier=verifier,
        login_hint=account.username or account.from_email,
        **providers.extra_authorize_params(client.provider),
    )
    pending = {
        "account_id": account.id,
        "user_id": user.id,
        "verifier": verifier,
        "redirect_uri": redirect_uri,
        "return_to": return_to,
    }
    try:
        get_redis().set(
            _pending_key(state), crypto.encrypt(json.dumps(pending)), ex=PENDING_SECONDS
        )
    except redis.RedisError:
        raise SignInFailed(
            "The sign-in could not be started: Redis, where it is kept while you sign in, is "
            "not answering.",
            "Try again in a minute.",
        ) from None
    return url, state


@dataclass(frozen=True)
class Pending:
    account_id: int
    user_id: int
    verifier: str
    redirect_uri: str
    return_to: str


def take_pending(state: str) -> Pending | None:
    """The sign-in this state started, once: a second use finds nothing."""
    if not state or len(state) > 200:
        return None
    try:
        pipe = get_redis().pipeline()
        pipe.get(_pending_key(state))
        pipe.delete(_pending_key(state))
        value, deleted = pipe.execute()
    except redis.RedisError as error:
        log.warning("a sign-in could not be completed: Redis is not answering: %s", error)
        return None
    if value is None or not deleted:
        return None
    try:
        return Pending(**json.loads(crypto.decrypt(value)))
    except crypto.SecretUnreadable:
        return None


def complete(
    pending: Pending,
    user: User,
    code: str | None,
    error: str | None,
    error_description: str | None,
) -> EmailAccount:
    """Exchange the code for tokens and keep the refresh token; resumes an account paused for
    want of a sign-in. Raises SignInFailed."""
    if pending.user_id != user.id:
        raise SignInFailed("This sign-in was started by someone else.")
    account = resolution.live_account(pending.account_id)
    if account is None or not account.is_delegated:
        raise SignInFailed("The account no longer signs in with OAuth 2.0.")
    provider = account.oauth_provider
    if error:
        meaning = providers.explain(provider, error, error_description)
        raise SignInFailed(providers.answer_text(error, error_description), meaning.hint)
    if not code:
        raise SignInFailed("The provider sent no authorization code back.")
    try:
        client = registration.client(provider)
    except registration.NotRegistered as failure:  # removed while the person signed in
        raise SignInFailed(str(failure)) from None
    except crypto.SecretUnreadable:
        raise SignInFailed(*_UNREADABLE_SECRET) from None
    session = tokens.session_for(
        client, scope=providers.scopes(account), redirect_uri=pending.redirect_uri
    )
    try:
        token = session.fetch_token(
            providers.token_url(provider, client.tenant),
            grant_type="authorization_code",
            code=code,
            code_verifier=pending.verifier,
            timeout=current_app.config["SMTP_TIMEOUT_SECONDS"],
        )
    except OAuthError as failure:
        meaning = providers.explain(provider, failure.error, failure.description)
        answer = providers.answer_text(failure.error, failure.description)
        raise SignInFailed(answer, meaning.hint) from None
    except requests.RequestException as failure:
        raise SignInFailed(
            f"The {registration.PROVIDER_NAMES[provider]} token endpoint could not be reached "
            f"({type(failure).__name__}).",
            "Try again in a minute.",
        ) from None
    refresh = token.get("refresh_token")
    if not refresh:
        raise SignInFailed(
            "The provider sent no refresh token, so Lamplight could not keep sending.",
            "For Microsoft, the app needs the offline_access permission; for Google, remove "
            "Lamplight's access in the Google account's security settings and sign in again.",
        )
    account.refresh_token_encrypted = crypto.encrypt(refresh)
    account.signed_in_at = utcnow()
    audit.record(
        "account.signed_in",
        "email_account",
        account.id,
        f"Signed in with {registration.PROVIDER_NAMES[provider]} for {account.label}",
        {"provider": provider, "token": True},
    )
    health.settings_changed(account, {"sign_in"})  # proven by the next test or delivery
    health.resume(account)  # mail held for a sign-in goes out again
    return account


def mailbox_signed_in(account: EmailAccount) -> str:
    """The mailbox the sign-in was for: the username (the login hint, and who XOAUTH2 names),
    else the From address."""
    return account.username or account.from_email


def from_address_warning(account: EmailAccount) -> str | None:
    """When the From address is not the mailbox that signed in: the provider refuses or
    rewrites it unless that mailbox may send as it. None when they are the same."""
    mailbox = mailbox_signed_in(account)
    if mailbox.strip().lower() == account.from_email.strip().lower():
        return None
    if account.oauth_provider == registration.GOOGLE:
        rule = (
            f"Gmail replaces it with {mailbox} unless {account.from_email} is added under "
            f"“Send mail as” in {mailbox}'s Gmail settings."
        )
    else:
        rule = (
            f"Office 365 refuses to send as it unless {mailbox} has Send As rights on "
            f"{account.from_email} (a Microsoft 365 admin grants them in the Exchange admin "
            "centre), or change the From address to the mailbox."
        )
    return (
        f"The From address {account.from_email} is not the mailbox that signed in "
        f"({mailbox}): {rule}"
    )
