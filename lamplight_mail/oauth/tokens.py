"""Access tokens for sending, had when needed and shared between worker processes.

A token lives in Redis, Fernet-encrypted, until OAUTH_TOKEN_MARGIN_SECONDS before it expires.
Whoever finds none takes the account's Redis lock, looks again (another worker may have just
refreshed), and only then asks the provider: ten workers starting at once refresh once. The
cache key carries the account's grant, transport and sign-in moment, so a new sign-in or a
changed scope never reuses an old token.

A delegated account's refresh token is read from the database under the lock, and a rotated one
(Microsoft sends a new refresh token with each refresh) written back at once. Free of request
objects: the worker and the web checks both call `access_token`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time

import redis
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from flask import current_app
from sqlalchemy import select, update

from lamplight_mail import crypto
from lamplight_mail.delivery.transactions import write_transaction
from lamplight_mail.delivery.transports.base import Answer, TokenSource, TransportFailure
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import EmailAccount, OAuthGrant
from lamplight_mail.oauth import providers, registration
from lamplight_mail.oauth.providers import ErrorKind
from lamplight_mail.providers import AnswerKind

log = logging.getLogger(__name__)

KEY_PREFIX = "lamplight:oauth"


class TokenFailure(Exception):
    """No access token could be had: why (the provider's answer, never a token), what kind of
    trouble it is, and what to do. Safe to show and to log."""

    def __init__(self, kind: ErrorKind, answer: str, hint: str | None = None) -> None:
        self.kind = kind
        self.answer = answer
        self.hint = hint
        super().__init__(answer)


def _cache_key(account: EmailAccount) -> str:
    generation = "|".join(
        str(part)
        for part in (
            account.oauth_provider,
            account.oauth_grant,
            account.transport,
            account.signed_in_at,
        )
    )
    digest = hashlib.sha256(generation.encode()).hexdigest()[:16]
    return f"{KEY_PREFIX}:token:{account.id}:{digest}"


def access_token(account: EmailAccount, *, stale: str | None = None) -> str:
    """A live access token for the account. `stale` names a token the provider just refused
    (Graph's 401): it is not handed out again. Raises TokenFailure."""
    key = _cache_key(account)
    try:
        client = get_redis()
        cached = _read(client, key)
        if cached is not None and cached != stale:
            return cached
        wait = current_app.config["SMTP_TIMEOUT_SECONDS"] * 2
        lock = client.lock(f"{KEY_PREFIX}:lock:{account.id}", timeout=wait, blocking_timeout=wait)
        if not lock.acquire():
            raise TokenFailure(
                ErrorKind.TEMPORARY,
                "another process is getting this account's access token and has not finished",
            )
        try:
            cached = _read(client, key)
            if cached is not None and cached != stale:
                return cached  # another worker refreshed while this one waited
            token, expires_in = _acquire(account)
            margin = current_app.config["OAUTH_TOKEN_MARGIN_SECONDS"]
            lifetime = expires_in - margin if expires_in > 2 * margin else expires_in // 2
            client.set(key, crypto.encrypt(token), ex=max(1, lifetime))
            return token
        finally:
            # A lapsed lock is harmless: the token is cached.
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()
    except redis.RedisError as error:
        # Without Redis the worker sends nothing anyway (the limiter needs it); a connection
        # test can still prove the sign-in.
        log.warning("account %s: token cache unavailable: %s", account.id, error)
        return _acquire(account)[0]


def _read(client: redis.Redis, key: str) -> str | None:
    value = client.get(key)
    if value is None:
        return None
    try:
        return crypto.decrypt(value)
    except crypto.SecretUnreadable:
        return None  # encrypted under a key since dropped: get a fresh one


def forget(account_id: int) -> None:
    """Drop every cached access token of the account (a revoked grant, a new sign-in)."""
    client = get_redis()
    keys = list(client.scan_iter(f"{KEY_PREFIX}:token:{account_id}:*"))
    if keys:
        client.delete(*keys)


def session_for(client: registration.Client, **kwargs: object) -> OAuth2Session:
    return OAuth2Session(
        client.client_id,
        client.client_secret,
        token_endpoint_auth_method="client_secret_post",
        **kwargs,
    )


def _acquire(account: EmailAccount) -> tuple[str, int]:
    """Ask the provider: client credentials for an app grant, else the stored refresh token."""
    try:
        client = registration.client(account.oauth_provider)
    except registration.NotRegistered as error:
        raise TokenFailure(ErrorKind.ADMIN_FIX, str(error)) from None
    except crypto.SecretUnreadable:
        raise TokenFailure(
            ErrorKind.ADMIN_FIX,
            "the stored client secret cannot be decrypted with the configured keys",
            "Enter the client secret again under OAuth apps.",
        ) from None
    url = providers.token_url(client.provider, client.tenant)
    session = session_for(client, scope=providers.scopes(account))
    timeout = current_app.config["SMTP_TIMEOUT_SECONDS"]
    stored: bytes | None = None
    try:
        if account.oauth_grant == OAuthGrant.APP:
            token = session.fetch_token(url, grant_type="client_credentials", timeout=timeout)
        else:
            stored = db.session.scalar(
                select(EmailAccount.refresh_token_encrypted).where(EmailAccount.id == account.id)
            )
            db.session.commit()  # ends the read: no transaction stays open over HTTP
            if stored is None:
                raise TokenFailure(
                    ErrorKind.SIGN_IN_AGAIN,
                    "nobody has signed in to this mailbox yet",
                    providers.not_signed_in_hint(account.oauth_provider),
                )
            token = session.refresh_token(
                url, refresh_token=crypto.decrypt(stored), timeout=timeout
            )
    except OAuthError as error:
        meaning = providers.explain(client.provider, error.error, error.description)
        answer = providers.answer_text(error.error, error.description)
        raise TokenFailure(meaning.kind, answer, meaning.hint) from None
    except crypto.SecretUnreadable:
        raise TokenFailure(
            ErrorKind.SIGN_IN_AGAIN,
            "the stored sign-in cannot be decrypted with the configured keys",
            providers.SIGN_IN_AGAIN_HINT,
        ) from None
    except requests.RequestException as error:
        raise TokenFailure(
            ErrorKind.TEMPORARY,
            f"the {registration.PROVIDER_NAMES[client.provider]} token endpoint could not be "
            f"reached ({type(error).__name__})",
            "It is tried again later. If it persists, check this server can reach "
            f"{url.split('/')[2]}.",
        ) from None
    rotated = token.get("refresh_token")
    if stored is not None and rotated:
        _store_rotated(account.id, stored, rotated)
    expires_in = int(token.get("expires_in") or 0) or int(
        (token.get("expires_at") or time.time() + 3600) - time.time()
    )
    return token["access_token"], expires_in


def _store_rotated(account_id: int, old: bytes, new: str) -> None:
    """Keep the refresh token the provider sent back, unless someone signed in meanwhile."""
    if crypto.decrypt(old) == new:
        return
    with write_transaction():
        db.session.execute(
            update(EmailAccount)
            .where(EmailAccount.id == account_id, EmailAccount.refresh_token_encrypted == old)
            .values(refresh_token_encrypted=crypto.encrypt(new))
        )


_ANSWER_KINDS = {
    ErrorKind.SIGN_IN_AGAIN: AnswerKind.PAUSE_ACCOUNT,
    ErrorKind.ADMIN_FIX: AnswerKind.PAUSE_ACCOUNT,
    ErrorKind.TEMPORARY: AnswerKind.TEMPORARY,
}


def token_source(account: EmailAccount) -> TokenSource:
    """The account's access tokens for a transport (see transports/base.py): a failure to get
    one becomes a TransportFailure at the auth stage, so the job pauses the account (a revoked
    grant, a registration to fix) or retries later (the provider did not answer)."""

    def source(stale: str | None) -> str:
        try:
            return access_token(account, stale=stale)
        except TokenFailure as failure:
            raise TransportFailure(
                Answer(_ANSWER_KINDS[failure.kind], failure.answer, None, "auth", failure.hint)
            ) from None

    return source
