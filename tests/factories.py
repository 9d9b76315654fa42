"""Test data builders, shared by the tests and bench/: people, email accounts, sends, messages and
daily rollups written to the database, and small readers of what it (and the mail queue) holds.

Call them inside an app context. Rows are written straight through the models (no audit events)
unless a builder says otherwise; make_account(audited=True) goes through the account services
the way an admin's form does."""

from __future__ import annotations

import contextlib
import uuid
import zlib
from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask
from sqlalchemy import insert, select

from lamplight_mail.accounts import editing
from lamplight_mail.accounts.editing import AccountValues, PasswordAction, PasswordChange
from lamplight_mail.delivery import outbox
from lamplight_mail.delivery.mime import new_message_id
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountDailyStats,
    AccountKind,
    AuthMethod,
    EmailAccount,
    Message,
    MessageStatus,
    Role,
    Security,
    Send,
    SendStatus,
    User,
    utcnow,
)

if TYPE_CHECKING:
    from redis import Redis

    from tests.smtp_servers import SMTPServer

# Every test user's password, and the mailbox the test SMTP servers let in (conftest.py).
PASSWORD = "correct horse battery"
SMTP_USER = "sender@charity.example"
SMTP_PASSWORD = "app-password-9f3k2"

# An account that sends: AUTH LOGIN over STARTTLS as SMTP_USER, limits that do not bind.
# Without a `server` it points at a port nothing is expected to listen on.
ACCOUNT_SETTINGS: dict[str, Any] = {
    "provider": "custom",
    "host": "127.0.0.1",
    "port": 2525,
    "auth_method": AuthMethod.LOGIN,
    "security": Security.TLS,
    "username": SMTP_USER,
    "from_name": "Riverside Food Bank",
    "daily_limit": 100_000,
    "per_minute_limit": 100_000,
    "max_recipients": 500,
    "connection_cap": 3,
    "reserve_percent": 0,
}


def make_user(
    email: str = "olive@charity.example",
    *,
    name: str | None = None,
    role: Role = Role.OPERATOR,
    password: str = PASSWORD,
) -> User:
    """A person who can log in with `password`; named after their address unless `name`."""
    user = User(email=email, name=name or email.split("@")[0].title(), role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user


# The help page's Office 365 account as an admin's form makes it, for tests that read its
# preset's figures (use with audited=True).
OFFICE365 = {
    "provider": "office365",
    "from_name": "",
    "daily_limit": 10_000,
    "per_minute_limit": 30,
}


def make_account(
    server: SMTPServer | None = None,
    *,
    owner: User | None = None,
    password: str | None = SMTP_PASSWORD,
    default_for_operators: bool = False,
    audited: bool = False,
    **settings: Any,
) -> EmailAccount:
    """An email account, committed: `owner`'s own account, or the single account without one.

    Ready to send through `server` (a tests.smtp_servers.SMTPServer: its host and port) with
    SMTP_USER and `password` (None: no password stored, so waiting for one unless
    auth_method=AuthMethod.NONE). From the owner's address, or SMTP_USER for the single account.
    `settings` override ACCOUNT_SETTINGS or set any other column (from_email, paused_at...).
    `audited`: made through accounts.editing.save_account as an admin's form makes it (its
    checks: one single account, one account a person; an "account.created" audit event)."""
    values = ACCOUNT_SETTINGS | {"from_email": owner.email if owner else SMTP_USER}
    if server is not None:
        values |= {"host": server.host, "port": server.port}
    values |= settings
    kind = AccountKind.OPERATOR if owner else AccountKind.SYSTEM
    if audited:
        fields = {
            name: values.pop(name) for name in AccountValues.__dataclass_fields__ if name in values
        }
        change = (
            PasswordChange(PasswordAction.REPLACE, password)
            if password
            else PasswordChange(PasswordAction.LEAVE_TO_OPERATOR)
        )
        account = editing.save_account(
            None,
            kind,
            AccountValues(**fields),
            change,
            owner=owner,
            default_for_operators=default_for_operators,
        )
        for name, value in values.items():  # columns the form does not set (paused_at...)
            setattr(account, name, value)
    else:
        account = EmailAccount(
            kind=kind,
            owner_id=owner.id if owner else None,
            default_for_operators=default_for_operators,
            **values,
        )
        if password is not None:
            editing.set_password(account, password)
        db.session.add(account)
    db.session.commit()
    return account


def make_send(
    user: User,
    account: EmailAccount,
    recipients: Iterable[tuple[str, str]] = (),
    *,
    subject: str = "Food bank opening hours",
    status: SendStatus = SendStatus.QUEUED,
    created_at: datetime | None = None,
    message_status: MessageStatus = MessageStatus.PENDING,
    sent_at: datetime | None = None,
    flag_reason: str | None = None,
) -> Send:
    """A send by `user` through `account`, with one message (`message_status`, `sent_at`) per
    (address, name) in `recipients`; add_messages adds more in bulk."""
    recipients = list(recipients)
    send = Send(
        user_id=user.id,
        account_id=account.id,
        subject=subject,
        body_text="Hello",
        status=status,
        recipient_count=len(recipients),
        flag_reason=flag_reason,
        created_at=created_at or utcnow(),
    )
    db.session.add(send)
    db.session.flush()
    db.session.add_all(
        Message(
            send_id=send.id,
            account_id=account.id,
            recipient_email=address,
            recipient_name=name,
            message_id_header=new_message_id(account.from_email),
            status=message_status,
            sent_at=sent_at,
        )
        for address, name in recipients
    )
    db.session.flush()
    return send


def people(count: int, domain: str = "example.org") -> list[tuple[str, str]]:
    """(address, name) of `count` recipients, for make_send."""
    return [(f"person{i}@{domain}", f"Person {i}") for i in range(count)]


def record_sent(
    user: User, account: EmailAccount, count: int, sent_at: datetime | None = None
) -> Send:
    """`count` recipients already sent through the account at `sent_at` (default now)."""
    return make_send(
        user,
        account,
        people(count, "sent.example.org"),
        status=SendStatus.DONE,
        message_status=MessageStatus.SENT,
        sent_at=sent_at or utcnow(),
    )


def message_row(
    send_id: int,
    account_id: int,
    status: MessageStatus,
    *,
    recipient: str,
    created_at: datetime,
    due_at: datetime | None = None,
    updated_at: datetime | None = None,
    sent_at: datetime | None = None,
    attempts: int | None = None,
    last_code: int | None = None,
    last_response: str | None = None,
) -> dict[str, Any]:
    """One messages row for a bulk insert (insert(Message)), no ORM object made."""
    return {
        "send_id": send_id,
        "account_id": account_id,
        "recipient_email": recipient,
        "recipient_name": "",
        "message_id_header": f"<{uuid.uuid4().hex}@charity.example>",
        "status": status,
        "attempts": (1 if sent_at else 0) if attempts is None else attempts,
        "due_at": due_at or created_at,
        "created_at": created_at,
        "updated_at": updated_at or sent_at or created_at,
        "sent_at": sent_at,
        "last_code": last_code,
        "last_response": last_response,
    }


def add_messages(
    send: Send,
    count: int,
    status: MessageStatus,
    *,
    created_at: datetime | None = None,
    recipient: str = "person{n}@example.org",
    **fields: Any,
) -> None:
    """`count` messages of one send in one bulk insert; `recipient` may use {n}; `fields` are
    message_row's (due_at, updated_at, sent_at, attempts, last_code, last_response)."""
    created_at = created_at or utcnow()
    rows = [
        message_row(
            send.id,
            send.account_id,
            status,
            recipient=recipient.format(n=n),
            created_at=created_at,
            **fields,
        )
        for n in range(count)
    ]
    if rows:
        db.session.execute(insert(Message), rows)


def flagged_and_queued(operator: User, account: EmailAccount) -> tuple[Send, Send]:
    """A send of one held for an admin ("Spring appeal") and a queued send of one ("News")."""
    flagged = make_send(
        operator,
        account,
        [("amy@example.org", "Amy")],
        status=SendStatus.FLAGGED,
        subject="Spring appeal",
        flag_reason="Over the account's allowance.",
    )
    queued = make_send(operator, account, [("rory@example.org", "Rory")], subject="News")
    return flagged, queued


def add_daily(account: EmailAccount, day: date, sent: int, failed: int = 0) -> None:
    """The account's rollup row for `day`."""
    db.session.add(AccountDailyStats(account_id=account.id, day=day, sent=sent, failed=failed))


# --- Reading back ---------------------------------------------------------------------------


def user_by_email(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))


def statuses(send_id: int) -> dict[str, int]:
    """{status: count} of the send's messages, read fresh from the database (a new transaction:
    an open one would keep seeing its own snapshot on SQLite)."""
    db.session.rollback()
    counts: dict[str, int] = {}
    for status in db.session.scalars(select(Message.status).where(Message.send_id == send_id)):
        counts[status.value] = counts.get(status.value, 0) + 1
    return counts


def queued_job_args(app: Flask) -> list[tuple]:
    """The arguments of every job waiting on the mail queue."""
    with app.app_context():
        queue = outbox.mail_queue()
    return [tuple(job.args) for job in queue.get_jobs()]


def stored_text(app: Flask) -> str:
    """Every row of every table, as text: what anyone reading the database would see."""
    with app.app_context():
        rows = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)):
                rows.append(repr(tuple(row)))
        return "\n".join(rows)


def redis_values(client: Redis) -> list[bytes]:
    """Every key and value Redis holds (hashes, strings, lists), and, for RQ's compressed job
    payloads, what they inflate to: what anyone reading Redis would see."""
    values: list[bytes] = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == b"hash":
            values.extend(client.hgetall(key).values())
        elif kind == b"string":
            values.append(client.get(key))
        elif kind == b"list":
            values.extend(client.lrange(key, 0, -1))
    inflated = []
    for value in values:
        with contextlib.suppress(zlib.error):
            inflated.append(zlib.decompress(value))
    return values + inflated
