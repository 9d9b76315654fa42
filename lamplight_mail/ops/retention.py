"""How long the delivery log keeps messages: a setting (90 days unless changed) and the purge.

The per-day rollups (AccountDailyStats) are never purged, so the dashboard's history and the
metrics' counters outlive the messages they counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select

from lamplight_mail import attachments, audit
from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus, Send, SendStatus, Setting, utcnow

RETENTION_SETTING = "message_retention_days"
DEFAULT_RETENTION_DAYS = 90
BATCH_SIZE = 5000
# Only finished messages go; anything still to be sent stays, however old.
FINAL_MESSAGE_STATUSES = (MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.CANCELLED)
FINAL_SEND_STATUSES = (SendStatus.DONE, SendStatus.CANCELLED)


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    messages: int
    sends: int


def retention_days() -> int:
    setting = db.session.get(Setting, RETENTION_SETTING)
    return int(setting.value) if setting else DEFAULT_RETENTION_DAYS


def set_retention_days(days: int) -> None:
    """Keep messages for `days` days from now on (the caller commits)."""
    if days < 1:
        raise ValueError("messages must be kept for at least one day")
    previous = retention_days()
    setting = db.session.get(Setting, RETENTION_SETTING) or Setting(key=RETENTION_SETTING)
    setting.value = str(days)
    db.session.add(setting)
    audit.record(
        "retention.changed",
        "setting",
        None,
        f"Messages are now kept for {days} days (was {previous})",
        {"days": days, "previous": previous},
    )


def purge(days: int, *, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> PurgeResult:
    """Delete finished messages created more than `days` days ago, then the sends they
    emptied. Commits each batch: short transactions keep the workers (and SQLite's single
    writer) from waiting on one long delete."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    messages = _delete_in_batches(
        Message,
        select(Message.id).where(
            Message.created_at < cutoff, Message.status.in_(FINAL_MESSAGE_STATUSES)
        ),
        batch_size,
    )
    sends = _delete_in_batches(
        Send,
        select(Send.id).where(
            Send.created_at < cutoff,
            Send.status.in_(FINAL_SEND_STATUSES),
            ~exists().where(Message.send_id == Send.id),
        ),
        batch_size,
    )
    # Attachments go with their sends (ON DELETE CASCADE); uploads never sent, after a day.
    attachments.purge_unsent(now)
    audit.record(
        "messages.purged",
        "message",
        None,
        f"Deleted {messages} messages and {sends} sends created before "
        f"{cutoff:%d %b %Y %H:%M} UTC (kept for {days} days); daily figures kept",
        {"days": days, "messages": messages, "sends": sends},
    )
    db.session.commit()
    return PurgeResult(cutoff, messages, sends)


def _delete_in_batches(model: type[db.Model], ids_query, batch_size: int) -> int:
    deleted = 0
    while ids := list(db.session.scalars(ids_query.limit(batch_size))):
        db.session.execute(
            delete(model).where(model.id.in_(ids)).execution_options(synchronize_session=False)
        )
        db.session.commit()
        deleted += len(ids)
    return deleted
