"""The per-account sending limiter: one set of counters in Redis, shared by every worker.

Each account has, under keys sharing one hash tag (so a Redis Cluster keeps them together):
- `daily`:  a sorted set with one member per recipient sent in the rolling daily window, scored
            by the moment (ms) it was reserved;
- `minute`: one member per message over the rolling minute window (pacing);
- `conns`:  one member per open SMTP connection, scored by when its lease lapses;
- `hold`:   the moment (ms) until which the provider told us to wait, with a matching expiry;
- `built`:  the marker saying the windows hold the truth. Redis restarted empty or flushed has
            no marker, and nothing is allowed until the windows are rebuilt from the database.

Every decision runs in one Lua script with Redis TIME as the only clock, so any number of workers
on any number of machines see one consistent count. Redis must run with `maxmemory-policy
noeviction` (RQ needs it too): an evicted window with its marker kept would under-count.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import redis
from flask import current_app
from redis.commands.core import Script
from sqlalchemy import func, select

from lamplight_mail import providers
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import (
    EmailAccount,
    Message,
    MessageStatus,
    Send,
    SendStatus,
    Setting,
)
from lamplight_mail.wording import plural

log = logging.getLogger(__name__)

# A connection's slot lapses this long after its last renewal, so a worker that dies frees it.
CONNECTION_LEASE_SECONDS = 60
# How long a rebuild may take before another worker may take over, and how long others wait.
REBUILD_LOCK_SECONDS = 30
REBUILD_WAIT_SECONDS = 10.0
REBUILD_RETRY_SECONDS = 5
# reserve(): places wait at most this long for their messages, and count from its end.
PLACES_SECONDS = 0.25
# reserve(): the most places one connection holds at once (see _rebuild).
PLACES_AHEAD = 20
# Quota answers when our own window gives no better moment: probe again after this long.
QUOTA_HOLD_MIN_SECONDS = 15 * 60
QUOTA_HOLD_EMPTY_WINDOW_SECONDS = 3600
FLAG_THRESHOLD_KEY = "flag_threshold"

_REBUILD_BATCH = 500

# KEYS[1] daily zset, KEYS[2] minute zset, KEYS[3] built marker, KEYS[4] hold
# ARGV[1] daily window ms, ARGV[2] daily allowance (limit less the reserve),
# ARGV[3] minute window ms, ARGV[4] messages per minute window, ARGV[5] recipients a message,
# ARGV[6] reservation token, ARGV[7] messages wanted, ARGV[8] ms the places may wait for use
# Reserves places for 1 to ARGV[7] messages, as many as both windows have room for, each
# counted ARGV[8] ms from now (the latest moment it may start: see Places). Place j's members
# are TOKEN.j (minute) and TOKEN.j:1 ... TOKEN.j:recipients (daily).
# Returns {status, now ms, not-before ms, places}: status 1 reserved; refused: 2 daily window
# full, 3 minute window full, 4 held; -1 the windows must be rebuilt first, -2 more recipients
# than the allowance (never fits).
_ACQUIRE = """
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1, 0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local daily_window, allowance = tonumber(ARGV[1]), tonumber(ARGV[2])
local minute_window, per_minute = tonumber(ARGV[3]), tonumber(ARGV[4])
local recipients = tonumber(ARGV[5])
if recipients > allowance then return {-2, now, 0, 0} end
local hold = tonumber(redis.call('GET', KEYS[4]) or '0')
if hold > now then return {4, now, hold, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - daily_window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - minute_window)
local status, not_before = 1, 0
local used = redis.call('ZCARD', KEYS[1])
if used + recipients > allowance then
  -- the entry whose departure makes room: the (used + recipients - allowance)-th oldest
  local leaving = redis.call('ZRANGE', KEYS[1], used + recipients - allowance - 1,
    used + recipients - allowance - 1, 'WITHSCORES')
  status, not_before = 2, tonumber(leaving[2]) + daily_window
end
local in_minute = redis.call('ZCARD', KEYS[2])
if in_minute >= per_minute then
  local leaving = redis.call('ZRANGE', KEYS[2], in_minute - per_minute, in_minute - per_minute,
    'WITHSCORES')
  local moment = tonumber(leaving[2]) + minute_window
  if moment > not_before then status, not_before = 3, moment end
end
if status ~= 1 then return {status, now, not_before, 0} end
local ahead = tonumber(ARGV[8])
local places = math.min(tonumber(ARGV[7]), math.floor((allowance - used) / recipients),
  per_minute - in_minute)
local at = now + ahead
for j = 1, places do
  local place = ARGV[6] .. '.' .. j
  for i = 1, recipients do
    redis.call('ZADD', KEYS[1], at, place .. ':' .. i)
  end
  redis.call('ZADD', KEYS[2], at, place)
end
-- Kept while its latest entry counts (never shortened: another's may count for longer).
for k, ms in pairs({[KEYS[1]] = daily_window + ahead, [KEYS[2]] = minute_window + ahead}) do
  if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
end
return {1, now, 0, places}
"""

# KEYS[1] daily zset, KEYS[2] minute zset, KEYS[3] built marker, KEYS[4] rebuild lock
# ARGV[1] lock token, ARGV[2] daily window ms, ARGV[3] minute window ms, ARGV[4] now ms,
# ARGV[5...] pairs of (sent at ms, member)
# Returns 1 when the windows were rebuilt; 0 when the lock was lost (e.g. flushed meanwhile) or
# another worker finished a rebuild first (its windows may already hold new reservations).
_REBUILD = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
local now = tonumber(ARGV[4])
local daily_from = now - tonumber(ARGV[2])
local minute_from = now - tonumber(ARGV[3])
local latest = now
for i = 5, #ARGV, 2 do
  local at = tonumber(ARGV[i])
  if at > daily_from then redis.call('ZADD', KEYS[1], at, ARGV[i + 1]) end
  if at > minute_from then redis.call('ZADD', KEYS[2], at, ARGV[i + 1]) end
  if at > latest then latest = at end
end
redis.call('PEXPIRE', KEYS[1], latest - now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], latest - now + tonumber(ARGV[3]))
redis.call('SET', KEYS[3], now)
redis.call('DEL', KEYS[4])
return 1
"""

# KEYS[1] rebuild lock; ARGV[1] lock token. Deletes the lock only if it is still ours.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] daily zset, KEYS[2] minute zset, KEYS[3] hold
# ARGV[1] daily window ms, ARGV[2] minute window ms
# Returns {now ms, recipients in the daily window, messages in the minute window,
# oldest daily entry ms or -1, entries leaving within a minute window of the oldest, hold ms}
_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local daily_window, minute_window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - daily_window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - minute_window)
local oldest, leaving = -1, 0
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first > 0 then
  oldest = tonumber(first[2])
  leaving = redis.call('ZCOUNT', KEYS[1], oldest, '(' .. (oldest + minute_window))
end
local hold = tonumber(redis.call('GET', KEYS[3]) or '0')
return {now, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), oldest, leaving, hold}
"""

# KEYS[1] connections zset (member: slot token, score: lease end ms)
# ARGV[1] connection cap, ARGV[2] slot token, ARGV[3] lease ms
# Takes or renews the slot. Returns 1 when held, 0 when every slot is taken by live leases.
_CONNECTION = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS[1] hold; ARGV[1] hold length ms. Never shortens a longer hold. Returns the hold's end ms.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= until_ms then return current end
redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]))
return until_ms
"""

_scripts: dict[str, Script] = {}


def _run(source: str, client: redis.Redis, keys: list[str], args: list) -> object:
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = client.register_script(source)
    return script(keys=keys, args=args, client=client)


class Refusal(enum.StrEnum):
    DAILY = "daily"  # the rolling daily window is full
    MINUTE = "minute"  # pacing: the minute's messages are used
    HELD = "held"  # the provider asked us to wait
    REBUILDING = "rebuilding"  # another worker is rebuilding the windows after a Redis loss
    TOO_MANY_RECIPIENTS = "too_many_recipients"  # more than the allowance: never fits


_REFUSALS = {2: Refusal.DAILY, 3: Refusal.MINUTE, 4: Refusal.HELD}


@dataclass(frozen=True)
class Reservation:
    """One message's place, so a message the server did not accept can be given back."""

    account_id: int
    token: str  # the place's token: its members in the windows are named after it
    recipients: int


class Places:
    """Room reserved at once for up to `count` messages (one limiter round trip for a run of
    messages rather than one each), taken one message at a time.

    Each place is counted in the windows at the latest moment its message may start (the
    reservation's moment plus PLACES_SECONDS), never earlier than the message goes, so pacing
    and the daily window hold as if each message had been counted as it went; a place not
    taken by then is no longer used. Places never taken go back with give_back()."""

    def __init__(
        self, account_id: int, token: str, recipients: int, count: int, usable_until: float
    ) -> None:
        self.account_id = account_id
        self.token = token
        self.recipients = recipients
        self.count = count
        self.usable_until = usable_until  # time.monotonic(): no message may start after it
        self.taken = 0

    @property
    def left(self) -> int:
        """Places that may still be taken now."""
        return self.count - self.taken if time.monotonic() < self.usable_until else 0

    def take(self) -> Reservation | None:
        """The next place, for a message about to go; None when none is left."""
        if not self.left:
            return None
        self.taken += 1
        return Reservation(self.account_id, f"{self.token}.{self.taken}", self.recipients)

    def give_back(self) -> None:
        """Give back the places not taken (their messages never went). Counting too much errs
        on the safe side, so a Redis error is left to the caller to log."""
        untaken = range(self.taken + 1, self.count + 1)
        self.taken = self.count
        if not untaken:
            return
        keys = _keys(self.account_id)
        pipeline = get_redis().pipeline(transaction=False)
        pipeline.zrem(
            keys["daily"],
            *(f"{self.token}.{j}:{i}" for j in untaken for i in range(1, self.recipients + 1)),
        )
        pipeline.zrem(keys["minute"], *(f"{self.token}.{j}" for j in untaken))
        pipeline.execute()


@dataclass(frozen=True)
class Decision:
    """Go (with the room reserved) or not before a computed moment (naive UTC)."""

    allowed: bool
    now: datetime
    reservation: Reservation | None = None  # acquire: the message's place
    refusal: Refusal | None = None
    # None when refused with TOO_MANY_RECIPIENTS: waiting would not help.
    not_before: datetime | None = None
    places: Places | None = None  # reserve: the places reserved


@dataclass(frozen=True)
class Usage:
    """An account's standing in its windows, for the dashboard and the compose-time check."""

    now: datetime
    daily_limit: int
    allowance: int  # the daily limit less the reserve kept for mail sent from Outlook itself
    sent_in_window: int  # recipients in the rolling daily window
    sent_last_minute: int  # messages in the rolling minute window
    per_minute_limit: int
    next_free_at: datetime | None  # when the oldest entries leave the daily window
    next_free_count: int  # how many leave within a minute of that moment
    held_until: datetime | None  # a provider quota or rate answer made the account wait

    @property
    def remaining(self) -> int:
        return max(0, self.allowance - self.sent_in_window)


def _to_datetime(ms: int | float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def _to_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def _keys(account_id: int) -> dict[str, str]:
    prefix = f"lm:limits:{{{account_id}}}:"
    names = ("daily", "minute", "built", "hold", "rebuild", "conns")
    return {name: prefix + name for name in names}


def _windows_ms() -> tuple[int, int]:
    config = current_app.config
    return config["DAILY_WINDOW_SECONDS"] * 1000, config["MINUTE_WINDOW_SECONDS"] * 1000


def allowance(account: EmailAccount) -> int:
    """Recipients the account may send in the rolling window: the limit less the reserve."""
    reserve = -(-account.daily_limit * account.reserve_percent // 100)  # rounded up
    return max(0, account.daily_limit - reserve)


# --- Deciding ------------------------------------------------------------------------------


def acquire(account: EmailAccount, recipients: int = 1) -> Decision:
    """Reserve room for one message to `recipients` people, or say when to ask again.

    Call it for each message right before handing it to the server, while the message is
    claimed (status sending), so a rebuild after a Redis loss counts it.
    """
    decision = _reserve(account, 1, recipients, ahead_seconds=0.0)
    if decision.places is None:
        return decision
    # Counted now, for a message that goes now: its one place is taken at once.
    reservation = Reservation(account.id, f"{decision.places.token}.1", recipients)
    return replace(decision, reservation=reservation, places=None)


def reserve(account: EmailAccount, messages: int, recipients: int = 1) -> Decision:
    """Reserve room for up to `messages` messages of `recipients` people each, as many as the
    windows allow (at least one), in one round trip; or say when to ask again.

    The places (decision.places) are for messages claimed now (status sending), so a rebuild
    after a Redis loss counts them; each is taken right before its message goes, within
    PLACES_SECONDS, and those not taken are given back.
    """
    return _reserve(account, messages, recipients, ahead_seconds=PLACES_SECONDS)


def _reserve(
    account: EmailAccount, messages: int, recipients: int, ahead_seconds: float
) -> Decision:
    if recipients < 1:
        raise ValueError("a message has at least one recipient")
    if messages < 1:
        raise ValueError("reserve room for at least one message")
    client = get_redis()
    keys = _keys(account.id)
    daily_ms, minute_ms = _windows_ms()
    token = uuid.uuid4().hex
    args = [
        daily_ms,
        allowance(account),
        minute_ms,
        account.per_minute_limit,
        recipients,
        token,
        messages,
        int(ahead_seconds * 1000),
    ]
    script_keys = [keys["daily"], keys["minute"], keys["built"], keys["hold"]]
    # No place may be used later than it is counted: counted from Redis's clock, which reads
    # no earlier than this.
    asked_at = time.monotonic()
    status, now_ms, not_before_ms, count = _run(_ACQUIRE, client, script_keys, args)
    if status == -1 and ensure_windows(account.id, client):
        asked_at = time.monotonic()
        status, now_ms, not_before_ms, count = _run(_ACQUIRE, client, script_keys, args)
    if status == -1:  # another worker is still rebuilding, or Redis was flushed again
        now_ms = _redis_now_ms(client)
        return Decision(
            False,
            _to_datetime(now_ms),
            refusal=Refusal.REBUILDING,
            not_before=_to_datetime(now_ms + REBUILD_RETRY_SECONDS * 1000),
        )
    now = _to_datetime(now_ms)
    if status == 1:
        places = Places(account.id, token, recipients, count, asked_at + ahead_seconds)
        return Decision(True, now, places=places)
    if status == -2:
        return Decision(False, now, refusal=Refusal.TOO_MANY_RECIPIENTS)
    return Decision(False, now, refusal=_REFUSALS[status], not_before=_to_datetime(not_before_ms))


def refund(reservation: Reservation) -> None:
    """Give back the daily room of a message the server did not accept.

    The minute entry stays: the server did see the attempt, and pacing errs on the slow side.
    """
    members = [f"{reservation.token}:{i}" for i in range(1, reservation.recipients + 1)]
    get_redis().zrem(_keys(reservation.account_id)["daily"], *members)


def slow_down(account: EmailAccount, seconds: int) -> datetime:
    """Hold the account's sending for `seconds` (never shortening a longer hold); returns the
    moment it may send again."""
    until_ms = _run(_HOLD, get_redis(), [_keys(account.id)["hold"]], [max(1, seconds) * 1000])
    return _to_datetime(until_ms)


def hold_for_answer(account: EmailAccount, code: int | None, answer: str) -> datetime | None:
    """When a server answer means the provider's own quota or rate was reached, hold the
    account and return the moment to try again; None for any other answer.

    Quota answers wait until our own oldest sends leave the daily window (the provider may also
    count mail sent from elsewhere, so at least QUOTA_HOLD_MIN_SECONDS).
    """
    rule = providers.provider_limit(code, answer)
    if rule is None:
        return None
    seconds = rule.hold_seconds
    if seconds is None:
        figures = usage(account)
        if figures.next_free_at is None:
            seconds = QUOTA_HOLD_EMPTY_WINDOW_SECONDS
        else:
            wait = (figures.next_free_at - figures.now).total_seconds()
            seconds = max(QUOTA_HOLD_MIN_SECONDS, int(wait) + 1)
    return slow_down(account, seconds)


# --- Connections ---------------------------------------------------------------------------


class ConnectionSlot:
    """One of the account's concurrent SMTP connections, held as a renewable lease."""

    def __init__(self, client: redis.Redis, account: EmailAccount, lease_seconds: float) -> None:
        self._client = client
        self._key = _keys(account.id)["conns"]
        self._cap = account.connection_cap
        self._lease_ms = int(lease_seconds * 1000)
        # Renewed a third of the way into its lease: two more chances before it lapses.
        self._renew_every = lease_seconds / 3
        self._renewed_at = -float("inf")
        self.token = uuid.uuid4().hex

    def renew(self) -> bool:
        """Extend the lease. False: the lease lapsed and the slot went to another connection,
        so this one should close."""
        renewed_at = time.monotonic()
        held = bool(
            _run(_CONNECTION, self._client, [self._key], [self._cap, self.token, self._lease_ms])
        )
        if held:
            self._renewed_at = renewed_at
        return held

    def renew_if_due(self) -> bool:
        """Before each message: renew when a third of the lease has gone by (a Redis call every
        few seconds, not per message). False as renew()."""
        if time.monotonic() - self._renewed_at < self._renew_every:
            return True
        return self.renew()

    def release(self) -> None:
        """Give the slot back; when Redis cannot be reached, it lapses by itself at the end of
        its lease, so this never raises (it runs while a job unwinds)."""
        try:
            self._client.zrem(self._key, self.token)
        except redis.RedisError as error:
            log.warning("connection slot not released (it lapses by itself): %s", error)


@contextmanager
def connection_slot(
    account: EmailAccount, lease_seconds: float = CONNECTION_LEASE_SECONDS
) -> Iterator[ConnectionSlot | None]:
    """A connection slot for the account for the duration of the block, or None when its
    connection cap is reached across all workers (then leave the work to those connections)."""
    slot = ConnectionSlot(get_redis(), account, lease_seconds)
    if not slot.renew():
        yield None
        return
    try:
        yield slot
    finally:
        slot.release()


def open_connections(account: EmailAccount) -> int:
    client = get_redis()
    key = _keys(account.id)["conns"]
    client.zremrangebyscore(key, "-inf", _redis_now_ms(client))
    return client.zcard(key)


# --- Rebuilding after a Redis loss ---------------------------------------------------------


def _redis_now_ms(client: redis.Redis) -> int:
    seconds, microseconds = client.time()
    return seconds * 1000 + microseconds // 1000


def ensure_windows(account_id: int, client: redis.Redis | None = None) -> bool:
    """Make sure the account's windows hold the truth, rebuilding them from the database's sent
    log when Redis lost them. One worker rebuilds; the others wait for it, up to
    REBUILD_WAIT_SECONDS. False when the windows are still not built (the caller declines)."""
    client = client or get_redis()
    keys = _keys(account_id)
    deadline = time.monotonic() + REBUILD_WAIT_SECONDS
    while not client.exists(keys["built"]):
        if time.monotonic() >= deadline:
            return False
        token = uuid.uuid4().hex
        if client.set(keys["rebuild"], token, nx=True, ex=REBUILD_LOCK_SECONDS):
            try:
                _rebuild(account_id, client, keys, token)
            finally:
                _run(_UNLOCK, client, [keys["rebuild"]], [token])
        else:
            time.sleep(0.05)
    return True


def _rebuild(account_id: int, client: redis.Redis, keys: dict[str, str], token: str) -> None:
    now_ms = _redis_now_ms(client)
    daily_ms, minute_ms = _windows_ms()
    since = _to_datetime(now_ms - daily_ms)
    # Its own connection: the caller (a job) may be between transactions and must stay so.
    with db.engine.connect() as connection:
        sent = connection.execute(
            select(Message.id, Message.sent_at).where(
                Message.account_id == account_id, Message.sent_at > since
            )
        ).all()
        claimed = connection.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.account_id == account_id, Message.status == MessageStatus.SENDING)
        )
        cap = connection.scalar(
            select(EmailAccount.connection_cap).where(EmailAccount.id == account_id)
        )
    args: list[object] = [token, daily_ms, minute_ms, now_ms]
    for message_id, sent_at in sent:
        args += [_to_ms(sent_at), f"m{message_id}"]
    # Places lost with Redis may belong to messages on the wire right now and not yet recorded
    # as sent, or still to go: a connection holds up to PLACES_AHEAD places, each usable for
    # PLACES_SECONDS more, and only for a claimed message. Count that many as sent then.
    ahead_ms = int(PLACES_SECONDS * 1000)
    for number in range(min(claimed, (cap or 0) * PLACES_AHEAD)):
        args += [now_ms + ahead_ms, f"in-flight:{number}"]
    _run(_REBUILD, client, [keys["daily"], keys["minute"], keys["built"], keys["rebuild"]], args)


# --- Figures -------------------------------------------------------------------------------


def usage(account: EmailAccount) -> Usage:
    """Sent in the windows, the allowance, when room next frees and how much, any hold.

    Should another worker still be rebuilding after a Redis loss, the figures are what Redis
    holds so far (the limiter itself declines meanwhile, so nothing is over-sent)."""
    client = get_redis()
    keys = _keys(account.id)
    ensure_windows(account.id, client)
    daily_ms, minute_ms = _windows_ms()
    now_ms, used, last_minute, oldest_ms, leaving, hold_ms = _run(
        _USAGE, client, [keys["daily"], keys["minute"], keys["hold"]], [daily_ms, minute_ms]
    )
    return Usage(
        now=_to_datetime(now_ms),
        daily_limit=account.daily_limit,
        allowance=allowance(account),
        sent_in_window=used,
        sent_last_minute=last_minute,
        per_minute_limit=account.per_minute_limit,
        next_free_at=None if oldest_ms < 0 else _to_datetime(oldest_ms + daily_ms),
        next_free_count=leaving,
        held_until=_to_datetime(hold_ms) if hold_ms > now_ms else None,
    )


def outstanding(account: EmailAccount) -> int:
    """Recipients already waiting to go through the account (released sends, not yet sent)."""
    return db.session.scalar(
        select(func.count())
        .select_from(Message)
        .join(Send, Send.id == Message.send_id)
        .where(
            Message.account_id == account.id,
            Message.status.in_(
                [MessageStatus.PENDING, MessageStatus.QUEUED, MessageStatus.DEFERRED]
            ),
            Send.status.in_([SendStatus.QUEUED, SendStatus.SENDING]),
        )
    )


def available_now(account: EmailAccount, figures: Usage | None = None) -> int:
    """What a new send could use now: the room in the window less the mail already waiting."""
    figures = figures or usage(account)
    return max(0, figures.remaining - outstanding(account))


def estimate_finish(
    account: EmailAccount, recipients: int, ahead: int | None = None
) -> datetime | None:
    """When `recipients` more would all have gone if released now behind the `ahead` already
    waiting: each waits for room in the daily window (over as many windows as it takes) and
    for its minute slot. None when the account's allowance is zero."""
    limit = allowance(account)
    per_minute = account.per_minute_limit
    if limit <= 0 or per_minute <= 0:
        return None
    if ahead is None:
        ahead = outstanding(account)
    client = get_redis()
    keys = _keys(account.id)
    ensure_windows(account.id, client)
    daily_ms, minute_ms = _windows_ms()
    now_ms = _redis_now_ms(client)
    sent = [
        score
        for _, score in client.zrangebyscore(
            keys["daily"], now_ms - daily_ms + 1, "+inf", withscores=True
        )
    ]
    first_new = len(sent)
    for k in range(ahead + recipients):
        moment = float(now_ms)
        if len(sent) >= limit:
            moment = max(moment, sent[len(sent) - limit] + daily_ms)
        if k >= per_minute:
            moment = max(moment, sent[first_new + k - per_minute] + minute_ms)
        sent.append(moment)
    return _to_datetime(sent[-1]) if len(sent) > first_new else _to_datetime(now_ms)


# --- The compose-time check ----------------------------------------------------------------


def flag_threshold() -> int | None:
    """The admin's optional "flag any send over N recipients"."""
    setting = db.session.get(Setting, FLAG_THRESHOLD_KEY)
    return int(setting.value) if setting else None


def set_flag_threshold(value: int | None) -> None:
    """Set or clear the threshold (the caller audits and commits)."""
    setting = db.session.get(Setting, FLAG_THRESHOLD_KEY)
    if value is None:
        if setting is not None:
            db.session.delete(setting)
    elif setting is None:
        db.session.add(Setting(key=FLAG_THRESHOLD_KEY, value=str(value)))
    else:
        setting.value = str(value)


def flag_reason(account: EmailAccount, recipient_count: int) -> str | None:
    """Why a send of `recipient_count` should wait for an admin, in plain words; None to go."""
    limit = allowance(account)
    kept = account.daily_limit - limit
    has = f"This send has {plural(recipient_count, 'recipient')}"
    of_limit = f"{plural(limit, 'recipient')} in 24 hours" + (
        f" ({kept:,} of its {account.daily_limit:,} kept free for mail sent from Outlook)"
        if kept
        else ""
    )
    if recipient_count > limit:
        return (
            f"{has}, more than the account can send in "
            f"a whole day ({of_limit}). Bulk email belongs in MailChimp (see Lamplight's help "
            "on linking with MailChimp)."
        )
    room = available_now(account)
    if recipient_count > room:
        return (
            f"{has} but the account can send only "
            f"{room:,} more right now (its limit is {of_limit}, counted over a rolling 24 hours, "
            "including mail already waiting to go)."
        )
    threshold = flag_threshold()
    if threshold is not None and recipient_count > threshold:
        return (
            f"{has}, over the {threshold:,} an admin "
            "set as the most a send may have without their review."
        )
    return None
