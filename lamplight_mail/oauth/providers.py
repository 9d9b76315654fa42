"""Where each provider's endpoints are, which scopes a kind of account asks for, and what a
provider's error answer means for the admin (AADSTS codes, Google's invalid_grant)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from flask import current_app

from lamplight_mail.models import EmailAccount, OAuthGrant, Transport
from lamplight_mail.oauth.registration import GOOGLE, MICROSOFT

# PROVIDERS.md: the SMTP scopes; Graph's Mail.Send for the Graph transport.
MICROSOFT_SMTP_DELEGATED = "https://outlook.office.com/SMTP.Send"
MICROSOFT_SMTP_APP = "https://outlook.office365.com/.default"
MICROSOFT_GRAPH_DELEGATED = "https://graph.microsoft.com/Mail.Send"
MICROSOFT_GRAPH_APP = "https://graph.microsoft.com/.default"
GOOGLE_MAIL = "https://mail.google.com/"


def microsoft_endpoint(tenant: str, name: str) -> str:
    """`{authority}/{tenant}/oauth2/v2.0/{authorize|token}` (CONTRACT.md)."""
    return f"{current_app.config['MICROSOFT_AUTHORITY']}/{tenant}/oauth2/v2.0/{name}"


def authorize_url(provider: str, tenant: str) -> str:
    if provider == GOOGLE:
        return current_app.config["GOOGLE_AUTH_URL"]
    return microsoft_endpoint(tenant, "authorize")


def token_url(provider: str, tenant: str) -> str:
    if provider == GOOGLE:
        return current_app.config["GOOGLE_TOKEN_URL"]
    return microsoft_endpoint(tenant, "token")


def scopes(account: EmailAccount) -> str:
    """The space-separated scopes this account's grant and transport need."""
    if account.oauth_provider == GOOGLE:
        return GOOGLE_MAIL  # Google: offline access is asked with access_type=offline
    graph = account.transport == Transport.GRAPH
    if account.oauth_grant == OAuthGrant.APP:
        return MICROSOFT_GRAPH_APP if graph else MICROSOFT_SMTP_APP
    # offline_access is what makes Microsoft issue a refresh token.
    return f"{MICROSOFT_GRAPH_DELEGATED if graph else MICROSOFT_SMTP_DELEGATED} offline_access"


def extra_authorize_params(provider: str) -> dict[str, str]:
    if provider == GOOGLE:
        # A refresh token every time, even for someone who signed in before.
        return {"access_type": "offline", "prompt": "consent"}
    return {"prompt": "select_account"}


class ErrorKind(enum.StrEnum):
    SIGN_IN_AGAIN = "sign_in_again"  # the grant is revoked or expired: a person signs in again
    ADMIN_FIX = "admin_fix"  # the registration or consent needs the admin
    TEMPORARY = "temporary"  # the provider or the network failed: try again later


@dataclass(frozen=True)
class Meaning:
    kind: ErrorKind
    hint: str


SIGN_IN_AGAIN_HINT = (
    "The sign-in to this mailbox has expired or was revoked. Press “Sign in again” and sign in "
    "to the mailbox; the mail waiting for it then goes out."
)


def not_signed_in_hint(provider: str) -> str:
    """For a delegated account nobody has signed in to (yet, or since its settings changed)."""
    name = "Google" if provider == GOOGLE else "Microsoft"
    return (
        f"Nobody has signed in to this mailbox since it was set up to sign in with OAuth 2.0 "
        f"(or since its provider, grant or “Send through” changed). Press “Sign in with {name}” "
        "and sign in to the mailbox; the mail waiting for it then goes out."
    )


# AADSTS codes from Microsoft's error reference, as an admin can act on them.
_AADSTS: dict[str, Meaning] = {
    "65001": Meaning(
        ErrorKind.ADMIN_FIX,
        "Consent required: in Microsoft Entra, open the app registration, API permissions, and "
        "press “Grant admin consent” (or let the person signing in accept the permissions).",
    ),
    "7000215": Meaning(
        ErrorKind.ADMIN_FIX,
        "Invalid client secret: copy the secret's Value (not its Secret ID) from Entra, "
        "Certificates & secrets, into the Microsoft client secret under OAuth apps.",
    ),
    "7000222": Meaning(
        ErrorKind.ADMIN_FIX,
        "The client secret has expired: create a new one in Entra (Certificates & secrets) and "
        "enter it under OAuth apps.",
    ),
    "700016": Meaning(
        ErrorKind.ADMIN_FIX,
        "The app is not found in this tenant: check the client id (Application ID) and the "
        "tenant under OAuth apps.",
    ),
    "90002": Meaning(
        ErrorKind.ADMIN_FIX,
        "The tenant is not found: enter the Directory (tenant) ID or the organisation's domain "
        "under OAuth apps.",
    ),
    "50011": Meaning(
        ErrorKind.ADMIN_FIX,
        "The redirect URI does not match: add the redirect URI shown under OAuth apps to the "
        "app registration (Authentication, Web platform).",
    ),
    "53003": Meaning(
        ErrorKind.ADMIN_FIX,
        "Conditional Access blocked the sign-in: ask your Microsoft 365 administrator to allow "
        "this app.",
    ),
    "70008": Meaning(ErrorKind.SIGN_IN_AGAIN, SIGN_IN_AGAIN_HINT),
    "700082": Meaning(ErrorKind.SIGN_IN_AGAIN, SIGN_IN_AGAIN_HINT),
    "50173": Meaning(ErrorKind.SIGN_IN_AGAIN, SIGN_IN_AGAIN_HINT),
    "50076": Meaning(ErrorKind.SIGN_IN_AGAIN, SIGN_IN_AGAIN_HINT),
}
_AADSTS_CODE = re.compile(r"AADSTS(\d+)")

GOOGLE_INVALID_GRANT_HINT = (
    "Google no longer accepts this sign-in: it was revoked in the Google account's security "
    "settings, the account's password changed, or the app's consent screen is in “Testing”, "
    "whose sign-ins expire after 7 days (publish it to stop that). Press “Sign in again”."
)


def explain(provider: str, error: str, description: str | None) -> Meaning:
    """What an OAuth error answer (RFC 6749 `error` and its description) means."""
    match = _AADSTS_CODE.search(description or "")
    if match and match.group(1) in _AADSTS:
        return _AADSTS[match.group(1)]
    if error == "invalid_grant":
        return Meaning(
            ErrorKind.SIGN_IN_AGAIN,
            GOOGLE_INVALID_GRANT_HINT if provider == GOOGLE else SIGN_IN_AGAIN_HINT,
        )
    if error in ("invalid_client", "unauthorized_client"):
        name = "Google" if provider == GOOGLE else "Microsoft"
        return Meaning(
            ErrorKind.ADMIN_FIX,
            f"The {name} app registration was refused: check its client id and client secret "
            "under OAuth apps.",
        )
    if error in ("consent_required", "interaction_required", "access_denied"):
        return Meaning(
            ErrorKind.ADMIN_FIX if provider == MICROSOFT else ErrorKind.SIGN_IN_AGAIN,
            "The permissions were not granted: sign in again and accept them, or grant admin "
            "consent in Microsoft Entra.",
        )
    if error in ("temporarily_unavailable", "server_error"):
        return Meaning(ErrorKind.TEMPORARY, "The provider could not answer: it is tried again.")
    return Meaning(ErrorKind.ADMIN_FIX, "Check the app registration under OAuth apps.")


def answer_text(error: str, description: str | None) -> str:
    """The provider's answer as pages show it: the error and the first line of its
    description (Microsoft's further lines are trace and correlation ids)."""
    first_line = description.splitlines()[0] if description else ""
    return f"{error}: {first_line}" if first_line else error
