"""The delivery log: every message with its account, sender, state and the server's answer;
filtered, paged by keyset (newest first) and exported as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import aliased, joinedload

from lamplight_mail import org_time
from lamplight_mail.extensions import db
from lamplight_mail.models import AccountKind, EmailAccount, Message, MessageStatus, Send, User
from lamplight_mail.reporting.csv_cells import safe_cell
from lamplight_mail.web.keyset import Cursor, Keyset, KeysetPage

PER_PAGE = 50
EXPORT_BATCH = 1000

Sender = aliased(User, name="sender")

KEYSET = Keyset(Message.created_at, Message.id, lambda row: Cursor(row.created_at, row.id))

CSV_HEADER = (
    "Created (UTC)",
    "Account",
    "Sender",
    "Recipient",
    "Recipient name",
    "Subject",
    "State",
    "Attempts",
    "Due (UTC)",
    "Sent (UTC)",
    "Server code",
    "Server answer",
    "Send",
    "Message",
)


@dataclass(frozen=True)
class LogFilter:
    account_id: int | None = None
    state: MessageStatus | None = None
    # Days as the organisation's clocks count them, as the log shows its times.
    date_from: date | None = None  # created on or after this day
    date_to: date | None = None  # created on or before this day
    search: str = ""  # part of the recipient's address or name, or of the subject

    def apply(self, query: Select) -> Select:
        if self.account_id is not None:
            query = query.where(Message.account_id == self.account_id)
        if self.state is not None:
            query = query.where(Message.status == self.state)
        if self.date_from is not None:
            query = query.where(Message.created_at >= org_time.day_start(self.date_from))
        if self.date_to is not None:
            next_day = org_time.day_start(self.date_to + timedelta(days=1))
            query = query.where(Message.created_at < next_day)
        if self.search:
            query = query.where(
                or_(
                    Message.recipient_email.icontains(self.search, autoescape=True),
                    Message.recipient_name.icontains(self.search, autoescape=True),
                    Send.subject.icontains(self.search, autoescape=True),
                )
            )
        return query

    def as_args(self) -> dict[str, str]:
        """The filter as query-string arguments, for links that keep it (pages, export)."""
        args = {
            "account": self.account_id,
            "state": self.state.value if self.state else None,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "q": self.search,
        }
        return {key: str(value) for key, value in args.items() if value}


def log_query(log_filter: LogFilter) -> Select:
    """The messages the filter selects, one row each with what the log shows (unordered)."""
    query = (
        select(
            Message.id,
            Message.created_at,
            Message.account_id,
            Message.status,
            Message.attempts,
            Message.due_at,
            Message.sent_at,
            Message.last_code,
            Message.last_response,
            Message.recipient_email,
            Message.recipient_name,
            Message.send_id,
            Send.subject,
            Sender.name.label("sender_name"),
            Sender.email.label("sender_email"),
        )
        .join(Send, Send.id == Message.send_id)
        .join(Sender, Sender.id == Send.user_id)
    )
    return log_filter.apply(query)


def log_page(
    log_filter: LogFilter,
    before: Cursor | None = None,
    after: Cursor | None = None,
    per_page: int = PER_PAGE,
) -> KeysetPage:
    return KEYSET.page(log_query(log_filter), before=before, after=after, per_page=per_page)


def accounts() -> dict[int, EmailAccount]:
    """Every account the log may name, removed ones included: single account first."""
    found = db.session.scalars(
        select(EmailAccount)
        .options(joinedload(EmailAccount.owner))
        .order_by(
            EmailAccount.archived_at.is_not(None),
            EmailAccount.kind != AccountKind.SYSTEM,
            EmailAccount.from_email,
            EmailAccount.id,
        )
    )
    return {account.id: account for account in found}


def csv_lines(log_filter: LogFilter) -> Iterator[str]:
    """The filtered log as CSV text, a line at a time, so a large export streams."""
    labels = {account_id: account.label for account_id, account in accounts().items()}
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: tuple[Any, ...]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([safe_cell(value) for value in values])
        return buffer.getvalue()

    yield line(CSV_HEADER)
    for row in KEYSET.batches(log_query(log_filter), EXPORT_BATCH):
        yield line(
            (
                _csv_time(row.created_at),
                labels.get(row.account_id, ""),
                f"{row.sender_name} <{row.sender_email}>",
                row.recipient_email,
                row.recipient_name,
                row.subject,
                row.status.value,
                row.attempts,
                _csv_time(row.due_at),
                _csv_time(row.sent_at),
                row.last_code or "",
                row.last_response or "",
                row.send_id,
                row.id,
            )
        )


def _csv_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""
