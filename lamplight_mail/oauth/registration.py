"""The organisation's app registrations with Microsoft Entra and Google Cloud: one row.

Client ids and the tenant are plain settings; client secrets are Fernet tokens, write-only like
account passwords (a blank field on save keeps the stored secret). Callers commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import select

from lamplight_mail import audit, crypto
from lamplight_mail.extensions import db
from lamplight_mail.models import OAuthRegistration

MICROSOFT = "microsoft"
GOOGLE = "google"
PROVIDER_NAMES = {MICROSOFT: "Microsoft", GOOGLE: "Google"}


def current() -> OAuthRegistration | None:
    return db.session.scalar(select(OAuthRegistration).order_by(OAuthRegistration.id).limit(1))


@dataclass(frozen=True)
class RegistrationValues:
    microsoft_tenant: str
    microsoft_client_id: str
    google_client_id: str
    # None keeps the stored secret; a string replaces it.
    microsoft_client_secret: str | None = field(default=None, repr=False)
    google_client_secret: str | None = field(default=None, repr=False)


def save(values: RegistrationValues) -> OAuthRegistration:
    """Create or update the registrations and audit what changed (never a secret's value)."""
    registration = current()
    if registration is None:
        registration = OAuthRegistration()
        db.session.add(registration)
    changes: dict[str, object] = {}
    for name in ("microsoft_tenant", "microsoft_client_id", "google_client_id"):
        value = getattr(values, name)
        if getattr(registration, name) != value:
            setattr(registration, name, value)
            changes[name] = value
    for provider in (MICROSOFT, GOOGLE):
        secret = getattr(values, f"{provider}_client_secret")
        if secret:
            setattr(registration, f"{provider}_client_secret_encrypted", crypto.encrypt(secret))
            changes[f"{provider}_client_secret"] = True
    db.session.flush()
    if changes:
        audit.record(
            "oauth.registration_updated",
            "oauth_registration",
            registration.id,
            f"Changed the OAuth app registrations: {', '.join(changes)}",
            changes,
        )
    return registration


@dataclass(frozen=True)
class Client:
    """One provider's registered app, the secret decrypted only for a token request."""

    provider: str
    client_id: str
    client_secret: str = field(repr=False)
    tenant: str = ""


class NotRegistered(Exception):
    """The organisation has not registered its app with this provider yet (safe to show)."""


def client(provider: str) -> Client:
    """The registered app for `provider`; raises NotRegistered, or crypto.SecretUnreadable."""
    registration = current()
    name = PROVIDER_NAMES[provider]
    if registration is None:
        raise NotRegistered(f"No {name} app is registered: an admin enters it under OAuth apps.")
    client_id = getattr(registration, f"{provider}_client_id")
    secret = getattr(registration, f"{provider}_client_secret_encrypted")
    tenant = registration.microsoft_tenant if provider == MICROSOFT else ""
    if not client_id or secret is None or (provider == MICROSOFT and not tenant):
        raise NotRegistered(
            f"The {name} app registration is incomplete: an admin enters its "
            f"{'tenant, ' if provider == MICROSOFT else ''}client id and client secret under "
            "OAuth apps."
        )
    return Client(provider, client_id, crypto.decrypt(secret), tenant)


def is_registered(provider: str) -> bool:
    try:
        client(provider)
    except (NotRegistered, crypto.SecretUnreadable):
        return False
    return True


def redirect_uri(request_root: str | None = None) -> str:
    """The URI to register with both providers: `<public url>/oauth/callback`. Without
    LAMPLIGHT_MAIL_PUBLIC_URL (development only) the request's own host stands in."""
    base = current_app.config.get("PUBLIC_URL") or (request_root or "").rstrip("/")
    return f"{base}/oauth/callback"
