"""One compose form, one send. A form posted twice (a double click or a second press of Send on
a slow connection, where the browser drops the first request's page but the server still
handles it) must not mail every recipient twice. Going back to the form and sending it again
is not caught: the browser fetches the form anew, with a new token, and that may be meant.

Each compose form carries a random token; the first post that sends with it claims the token in
Redis (shared by every web process) and records its send there, so a repeat is taken to the
send it repeats. When Redis cannot be reached the post goes through, as the throttles let it:
compose keeps working through a Redis outage."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lamplight_mail.extensions import get_redis
from lamplight_mail.web.throttle import UNREACHABLE

log = logging.getLogger(__name__)

KEY = "lamplight:compose-once:{user}:{token}"
# Far longer than any slow request; a form older than that is posted as new.
REMEMBER_SECONDS = 24 * 3600
PENDING = "pending"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class Earlier:
    """The post that claimed the token first: its send, or None while it is still being made."""

    send_id: int | None


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _key(user_id: int, token: str | None) -> str | None:
    # A form without a token (or with one this app never made) is simply not deduplicated.
    if not token or not _TOKEN.fullmatch(token):
        return None
    return KEY.format(user=user_id, token=token)


def claim(user_id: int, token: str | None) -> Earlier | None:
    """Claim the form's token for this post: None when it may send, else the earlier post."""
    key = _key(user_id, token)
    if key is None:
        return None
    try:
        client = get_redis()
        if client.set(key, PENDING, nx=True, ex=REMEMBER_SECONDS):
            return None
        value = client.get(key)
    except UNREACHABLE as error:
        log.warning("compose not checked for a repeat, Redis unavailable: %s", error)
        return None
    if value is None:  # expired between the two calls: a form a day old, posted as new
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return Earlier(int(text) if text.isdigit() else None)


@contextmanager
def _unless_redis_is_down(what: str) -> Iterator[None]:
    try:
        yield
    except UNREACHABLE as error:
        log.warning("compose token not %s, Redis unavailable: %s", what, error)


def record(user_id: int, token: str | None, send_id: int) -> None:
    """The claiming post made `send_id`: a repeat of the form is taken to it."""
    key = _key(user_id, token)
    if key is not None:
        with _unless_redis_is_down("recorded"):
            get_redis().set(key, str(send_id), ex=REMEMBER_SECONDS)


def release(user_id: int, token: str | None) -> None:
    """The claiming post made no send (it failed): the form may be posted again."""
    key = _key(user_id, token)
    if key is not None:
        with _unless_redis_is_down("released"):
            get_redis().delete(key)
