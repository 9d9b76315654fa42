"""Dashboard figures: per-account limit usage, the state of the queue, 14 days of history.

Every query is bounded by recent activity (the rolling window, open messages, flagged sends)
through an index, or reads the per-day rollups, so the cost stays flat however much history the
delivery log holds. Free of request objects: /metrics reads the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import redis
from flask import current_app
from rq import Worker
from sqlalchemy import DateTime, Integer, column, func, literal_column, select, values
from sqlalchemy.orm import joinedload

from lamplight_mail import org_time
from lamplight_mail.delivery import limits
from lamplight_mail.delivery.outbox import ACTIVE_SEND_STATUSES, mail_queue
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountDailyStats,
    AccountKind,
    EmailAccount,
    Message,
    MessageStatus,
    Send,
    SendStatus,
    utcnow,
)

HISTORY_DAYS = 14
FAILED_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Usage:
    """How much of its limits an account is using now."""

    sent_in_window: int  # recipients sent in the rolling daily window
    sent_last_minute: int  # messages sent in the rolling minute
    next_free_count: int = 0  # recipients whose share of the limit frees at next_free_at
    next_free_at: datetime | None = None
    held_until: datetime | None = None  # the provider asked the account to wait
    # Counted from the delivery log because the limiter (Redis) did not answer: close, but it
    # misses what is on the wire right now and any provider hold.
    from_sent_log: bool = False


@dataclass(frozen=True)
class Backlog:
    queued: int = 0
    deferred: int = 0
    deferred_from: datetime | None = None  # the earliest deferred message becomes due
    deferred_until: datetime | None = None  # the last one does


@dataclass(frozen=True)
class DayFigures:
    day: date
    sent: int = 0
    failed: int = 0


@dataclass(frozen=True)
class AccountFigures:
    account: EmailAccount
    usage: Usage
    backlog: Backlog
    failed_24h: int
    flagged_sends: int
    history: tuple[DayFigures, ...] = ()

    @property
    def daily_limit(self) -> int:
        return self.account.daily_limit

    @property
    def reserve(self) -> int:
        """Recipients kept free for mail sent from the mailbox itself (e.g. Outlook), rounded up
        as the limiter rounds it."""
        return -(-self.account.daily_limit * self.account.reserve_percent // 100)

    @property
    def remaining(self) -> int:
        return max(0, self.daily_limit - self.reserve - self.usage.sent_in_window)

    @property
    def usage_ratio(self) -> float:
        return self.usage.sent_in_window / self.daily_limit if self.daily_limit else 0.0


@dataclass(frozen=True)
class QueueStatus:
    now: datetime
    oldest_due_at: datetime | None  # the longest-waiting message that is due and unclaimed
    depth: int | None = None  # jobs waiting in RQ; None when Redis did not answer
    workers: int | None = None  # RQ workers alive on the mail queue

    @property
    def redis_answered(self) -> bool:
        return self.depth is not None

    @property
    def oldest_due_age(self) -> timedelta | None:
        if self.oldest_due_at is None:
            return None
        return max(timedelta(0), self.now - self.oldest_due_at)


def account_figures(
    now: datetime | None = None, *, with_history: bool = False, by_usage: bool = False
) -> list[AccountFigures]:
    """Figures for every account: the single account first, then operators' accounts by name
    (or by usage, highest first)."""
    now = now or utcnow()
    accounts = list(
        db.session.scalars(
            select(EmailAccount)
            .where(EmailAccount.archived_at.is_(None))
            .options(joinedload(EmailAccount.owner))
        )
    )
    ids = [account.id for account in accounts]
    usage = account_usage(accounts, now)
    backlog = _backlog(ids)
    failed = _failed_since(now - FAILED_WINDOW)
    flagged = _flagged_sends()
    history = daily_history(ids, org_time.day_of(now)) if with_history else {}
    figures = [
        AccountFigures(
            account=account,
            usage=usage[account.id],
            backlog=backlog.get(account.id, Backlog()),
            failed_24h=failed.get(account.id, 0),
            flagged_sends=flagged.get(account.id, 0),
            history=history.get(account.id, ()),
        )
        for account in accounts
    ]

    def order(figure: AccountFigures) -> tuple:
        account = figure.account
        name = (account.owner.name if account.owner else account.from_email).casefold()
        usage_key = -figure.usage_ratio if by_usage else 0
        return (account.kind != AccountKind.SYSTEM, usage_key, name, account.id)

    return sorted(figures, key=order)


def account_usage(accounts: Sequence[EmailAccount], now: datetime) -> dict[int, Usage]:
    """Usage of each account's limits as the limiter counts them (the figures workers obey),
    or from the sent log when Redis does not answer."""
    try:
        return {account.id: _usage_from_limiter(account) for account in accounts}
    except redis.RedisError:
        current_app.logger.warning("Redis did not answer: limit usage read from the sent log")
        return _usage_from_sent_log(accounts, now)


def _usage_from_limiter(account: EmailAccount) -> Usage:
    figures = limits.usage(account)
    return Usage(
        sent_in_window=figures.sent_in_window,
        sent_last_minute=figures.sent_last_minute,
        next_free_count=figures.next_free_count,
        # Said to the minute ("at 14:05"), like the sent log's figure.
        next_free_at=figures.next_free_at and _next_minute(figures.next_free_at),
        held_until=figures.held_until,
    )


def _usage_from_sent_log(accounts: Sequence[EmailAccount], now: datetime) -> dict[int, Usage]:
    if not accounts:
        return {}
    config = current_app.config
    window = timedelta(seconds=config["DAILY_WINDOW_SECONDS"])
    window_start = now - window
    minute_start = now - timedelta(seconds=config["MINUTE_WINDOW_SECONDS"])

    # Correlated subqueries: each is a range on ix_messages_account_sent_at for one account,
    # so the cost follows what the window holds, not the whole log.
    def in_window(aggregate, since: datetime):
        return (
            select(aggregate)
            .where(Message.account_id == EmailAccount.id, Message.sent_at >= since)
            .scalar_subquery()
        )

    rows = db.session.execute(
        select(
            EmailAccount.id,
            in_window(func.count(), window_start),
            in_window(func.count(), minute_start),
            in_window(func.min(Message.sent_at), window_start),
        ).where(EmailAccount.id.in_([account.id for account in accounts]))
    ).all()

    # Capacity frees when the oldest sends leave the window. Said to the minute ("at 14:05"),
    # so count everything that will have left by the end of that minute.
    frees_at = {
        account_id: _next_minute(oldest + window)
        for account_id, _, _, oldest in rows
        if oldest is not None
    }
    freeing = _sent_between(window_start, {key: at - window for key, at in frees_at.items()})
    return {
        account_id: Usage(
            sent_in_window=in_day,
            sent_last_minute=in_minute,
            next_free_count=freeing.get(account_id, 0),
            next_free_at=frees_at.get(account_id),
            from_sent_log=True,
        )
        for account_id, in_day, in_minute, _ in rows
    }


def _next_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def _sent_between(start: datetime, ends: dict[int, datetime]) -> dict[int, int]:
    """Per account, messages sent from `start` up to (not including) that account's end."""
    if not ends:
        return {}
    bounds = (
        values(column("account_id", Integer), column("end_at", DateTime), name="bounds")
        .data(list(ends.items()))
        .cte()
    )
    count = (
        select(func.count())
        .where(
            Message.account_id == bounds.c.account_id,
            Message.sent_at >= start,
            Message.sent_at < bounds.c.end_at,
        )
        .scalar_subquery()
    )
    return dict(db.session.execute(select(bounds.c.account_id, count)).all())


def _backlog(account_ids: Sequence[int]) -> dict[int, Backlog]:
    """Open messages per account. Correlated subqueries again: each seeks the account's slice
    of ix_messages_account_status_due (a GROUP BY over all accounts walks the whole index)."""
    waiting = (MessageStatus.PENDING, MessageStatus.QUEUED, MessageStatus.SENDING)
    deferred = (MessageStatus.DEFERRED,)

    def open_messages(aggregate, statuses: tuple[MessageStatus, ...]):
        return (
            select(aggregate)
            .select_from(Message)
            .join(Send, Send.id == Message.send_id)
            .where(
                Message.account_id == EmailAccount.id,
                Message.status.in_(statuses),
                # Messages of flagged (held) or cancelled sends are not waiting for a worker.
                Send.status.in_(ACTIVE_SEND_STATUSES),
            )
            .scalar_subquery()
        )

    rows = db.session.execute(
        select(
            EmailAccount.id,
            open_messages(func.count(), waiting),
            open_messages(func.count(), deferred),
            open_messages(func.min(Message.due_at), deferred),
            open_messages(func.max(Message.due_at), deferred),
        ).where(EmailAccount.id.in_(account_ids))
    )
    return {account_id: Backlog(*figures) for account_id, *figures in rows}


def _failed_since(since: datetime) -> dict[int, int]:
    # The literal (not a bound parameter) lets SQLite and PostgreSQL use the partial index
    # ix_messages_failed_updated, which holds failed messages only.
    failed = literal_column(f"'{MessageStatus.FAILED.value}'")
    return dict(
        db.session.execute(
            select(Message.account_id, func.count())
            .where(Message.status == failed, Message.updated_at >= since)
            .group_by(Message.account_id)
        ).all()
    )


def _flagged_sends() -> dict[int, int]:
    return dict(
        db.session.execute(
            select(Send.account_id, func.count())
            .where(Send.status == SendStatus.FLAGGED)
            .group_by(Send.account_id)
        ).all()
    )


def daily_history(
    account_ids: Sequence[int], today: date, days: int = HISTORY_DAYS
) -> dict[int, tuple[DayFigures, ...]]:
    """Sent and failed per day from the rollups (they outlive the retention purge), oldest day
    first, days without mail filled with zeros. Days are the organisation's, ending `today`."""
    first = today - timedelta(days=days - 1)
    rows = db.session.execute(
        select(
            AccountDailyStats.account_id,
            AccountDailyStats.day,
            AccountDailyStats.sent,
            AccountDailyStats.failed,
        ).where(
            AccountDailyStats.account_id.in_(account_ids),
            AccountDailyStats.day >= first,
            AccountDailyStats.day <= today,
        )
    )
    found = {(account_id, day): (sent, failed) for account_id, day, sent, failed in rows}
    calendar = [first + timedelta(days=offset) for offset in range(days)]
    history: dict[int, tuple[DayFigures, ...]] = {}
    for account_id in account_ids:
        figures = []
        for day in calendar:
            figures.append(DayFigures(day, *found.get((account_id, day), (0, 0))))
        history[account_id] = tuple(figures)
    return history


def queue_status(now: datetime | None = None) -> QueueStatus:
    """Queue depth and live workers from RQ, and how long the oldest due message has waited:
    together they show a stalled worker at a glance."""
    now = now or utcnow()
    oldest_due_at = db.session.scalar(
        select(func.min(Message.due_at))
        .join(Send, Send.id == Message.send_id)
        .where(
            Message.status.in_(
                (MessageStatus.PENDING, MessageStatus.QUEUED, MessageStatus.DEFERRED)
            ),
            Message.due_at <= now,
            Send.status.in_(ACTIVE_SEND_STATUSES),
        )
    )
    try:
        depth, workers = rq_figures()
    except redis.RedisError:
        current_app.logger.warning("Redis did not answer while reading the queue status")
        return QueueStatus(now, oldest_due_at)
    return QueueStatus(now, oldest_due_at, depth, workers)


def rq_figures() -> tuple[int, int]:
    """Jobs waiting on the mail queue and RQ workers alive on it (raises redis.RedisError).

    Worker.all drops workers whose heartbeat key has expired, so a killed worker stops
    counting once its TTL runs out instead of lingering in the registry.
    """
    queue = mail_queue()
    return queue.count, len(Worker.all(queue=queue))


def lifetime_totals() -> dict[int, tuple[int, int]]:
    """Sent and failed per account since it was created, from the rollups: they only grow
    (the retention purge keeps them), as Prometheus counters must."""
    rows = db.session.execute(
        select(
            AccountDailyStats.account_id,
            func.sum(AccountDailyStats.sent),
            func.sum(AccountDailyStats.failed),
        ).group_by(AccountDailyStats.account_id)
    )
    return {account_id: (int(sent), int(failed)) for account_id, sent, failed in rows}
