"""An account's OAuth 2.0 grant over its life: switching a password account to OAuth, and
pausing an account whose grant was revoked or expired until someone signs in again (signing
in resumes it: see signin.complete). Callers commit."""

from __future__ import annotations

from lamplight_mail import audit
from lamplight_mail.accounts import health
from lamplight_mail.models import AuthMethod, EmailAccount, OAuthGrant, Transport
from lamplight_mail.oauth import tokens
from lamplight_mail.oauth.providers import ErrorKind

# Microsoft's date (PROVIDERS.md): basic authentication for SMTP AUTH off by default.
BASIC_AUTH_OFF = "the end of December 2026"


def switch_to_oauth(account: EmailAccount) -> None:
    """One click: the account signs in with OAuth 2.0 (someone signs in, over SMTP with
    XOAUTH2) and keeps everything else. Its password is dropped: nothing will use it."""
    account.auth_method = AuthMethod.OAUTH2
    account.oauth_grant = OAuthGrant.DELEGATED
    account.transport = Transport.SMTP
    account.password_encrypted = None
    account.refresh_token_encrypted = None
    account.signed_in_at = None
    audit.record(
        "account.switched_to_oauth",
        "email_account",
        account.id,
        f"Switched {account.label} to OAuth 2.0 (modern authentication)",
        {
            "auth_method": AuthMethod.OAUTH2.value,
            "oauth_grant": OAuthGrant.DELEGATED.value,
            "password": True,
        },
    )


def pause_for(account: EmailAccount, failure: tokens.TokenFailure) -> None:
    """Hold the account's mail after a token failure that needs a person: a revoked or expired
    grant (sign in again) or a registration the admin must fix. A temporary failure is not
    for here: the mail simply waits for the next try."""
    if failure.kind == ErrorKind.TEMPORARY:
        raise ValueError("a temporary token failure does not pause the account")
    if failure.kind == ErrorKind.SIGN_IN_AGAIN and account.is_delegated:
        # The dead grant is dropped, so the account reads "sign in again" until someone does.
        account.refresh_token_encrypted = None
    health.pause(account, failure.answer, failure.hint)
