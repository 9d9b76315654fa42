"""Counters in Redis that stop one person (or one address) from doing something too often:
failed log-ins by account and by client address, compose posts and account tests by user.

A fixed window per key: the first counted event starts it (the key's expiry), and once the
count reaches the limit the action is refused until the key expires. The counters are shared by
every web process. When Redis cannot be reached they let the action through (and log it): a
Redis outage must not lock every user out of the app, and compose keeps working then too."""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

from flask import current_app
from redis import exceptions as redis_errors

from lamplight_mail.extensions import get_redis

log = logging.getLogger(__name__)

KEY = "lamplight:throttle:{name}:{who}"
# Redis down or too slow: the throttle steps aside. Any other Redis error is a bug and raises.
UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError)


@dataclass(frozen=True)
class Limit:
    """At most `config[attempts_setting]` events per `config[window_setting]` seconds."""

    name: str
    attempts_setting: str
    window_setting: str

    @property
    def attempts(self) -> int:
        return int(current_app.config[self.attempts_setting])

    @property
    def window_seconds(self) -> int:
        return int(current_app.config[self.window_setting])


LOGIN_BY_ACCOUNT = Limit("login-account", "LOGIN_FAILURES_PER_ACCOUNT", "LOGIN_WINDOW_SECONDS")
LOGIN_BY_ADDRESS = Limit("login-address", "LOGIN_FAILURES_PER_ADDRESS", "LOGIN_WINDOW_SECONDS")
COMPOSE_BY_USER = Limit("compose", "COMPOSE_POSTS_PER_WINDOW", "COMPOSE_WINDOW_SECONDS")
ACCOUNT_TESTS_BY_USER = Limit(
    "account-test", "ACCOUNT_TESTS_PER_WINDOW", "ACCOUNT_TEST_WINDOW_SECONDS"
)


def _key(limit: Limit, who: str) -> str:
    # Hashed: an email address or a client address is personal data, and Redis is no place
    # to keep a list of them.
    digest = hashlib.sha256(who.encode()).hexdigest()[:32]
    return KEY.format(name=limit.name, who=digest)


def retry_after(limit: Limit, who: str) -> int | None:
    """Seconds until `who` may try again, or None when under the limit."""
    try:
        client = get_redis()
        key = _key(limit, who)
        count = client.get(key)
        if count is None or int(count) < limit.attempts:
            return None
        ttl = client.pttl(key)
    except UNREACHABLE as error:
        log.warning("throttle %s not checked, Redis unavailable: %s", limit.name, error)
        return None
    return max(1, math.ceil(ttl / 1000)) if ttl > 0 else 1


# KEYS[1]: the counter. ARGV[1]: the window in seconds. The first event of a window sets the
# expiry (a key somehow left without one gets it too), later ones only count.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


def count(limit: Limit, who: str) -> None:
    """Count one event for `who`; the first one of a window starts it."""
    try:
        get_redis().eval(_COUNT, 1, _key(limit, who), limit.window_seconds)
    except UNREACHABLE as error:
        log.warning("throttle %s not counted, Redis unavailable: %s", limit.name, error)


def take(limit: Limit, who: str) -> int | None:
    """Count an event unless `who` is already over the limit: None when it may go ahead, else
    the seconds to wait."""
    wait = retry_after(limit, who)
    if wait is None:
        count(limit, who)
    return wait


def clear(limit: Limit, who: str) -> None:
    try:
        get_redis().delete(_key(limit, who))
    except UNREACHABLE as error:
        log.warning("throttle %s not cleared, Redis unavailable: %s", limit.name, error)


def in_words(seconds: int) -> str:
    """`3 minutes`, `40 seconds`: how long to wait, for a message on a page."""
    if seconds >= 90:
        minutes = math.ceil(seconds / 60)
        return f"{minutes} minutes"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def refusal(what: str, wait: int) -> str:
    """The message for a user over their limit, e.g. what="sent this form"."""
    return (
        f"You have {what} many times in a short while. To keep the service running for "
        f"everyone, please wait {in_words(wait)} before trying again."
    )
