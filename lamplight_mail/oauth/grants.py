"""Switching a password account to OAuth 2.0 in one click (the Office 365 notice). A revoked or
expired grant pauses the account through the delivery job like any account-blocking answer;
signing in again resumes it (signin.complete). Callers commit."""

from __future__ import annotations

from lamplight_mail import audit
from lamplight_mail.models import AuthMethod, EmailAccount, OAuthGrant, Transport


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
