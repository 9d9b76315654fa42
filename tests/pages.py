"""Rows written straight into the database for the dashboard, log, audit and ops tests, and a
small reader for the pages they render (stdlib html.parser: no extra test dependency)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from html import unescape
from html.parser import HTMLParser

from sqlalchemy import insert

from lamplight_mail import users
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
from tests.conftest import PASSWORD


def make_user(email: str, name: str | None = None, role: Role = Role.OPERATOR) -> User:
    user = users.create_user(email, name or email.split("@")[0].title(), role, PASSWORD)
    db.session.flush()
    return user


def make_account(
    owner: User | None = None,
    *,
    daily_limit: int = 100,
    per_minute_limit: int = 30,
    **fields,
) -> EmailAccount:
    """A ready account (no AUTH needed) unless `fields` say otherwise: the single account
    when `owner` is None."""
    values = {
        "kind": AccountKind.OPERATOR if owner else AccountKind.SYSTEM,
        "owner_id": owner.id if owner else None,
        "host": "smtp.charity.example",
        "port": 587,
        "auth_method": AuthMethod.NONE,
        "security": Security.TLS,
        "from_email": owner.email if owner else "office@charity.example",
        "daily_limit": daily_limit,
        "per_minute_limit": per_minute_limit,
        "max_recipients": 500,
    }
    account = EmailAccount(**(values | fields))
    db.session.add(account)
    db.session.flush()
    return account


def make_send(
    account: EmailAccount,
    user: User,
    *,
    subject: str = "Food bank opening hours",
    status: SendStatus = SendStatus.QUEUED,
    created_at: datetime | None = None,
    recipient_count: int = 0,
) -> Send:
    send = Send(
        user_id=user.id,
        account_id=account.id,
        subject=subject,
        body_text="Hello",
        status=status,
        recipient_count=recipient_count,
        created_at=created_at or utcnow(),
    )
    db.session.add(send)
    db.session.flush()
    return send


def add_messages(
    send: Send,
    count: int,
    status: MessageStatus,
    *,
    created_at: datetime | None = None,
    sent_at: datetime | None = None,
    due_at: datetime | None = None,
    updated_at: datetime | None = None,
    recipient: str = "person{n}@example.org",
    **fields,
) -> None:
    """`count` messages of one send in one bulk insert; `recipient` may use {n}."""
    now = utcnow()
    rows = [
        {
            "send_id": send.id,
            "account_id": send.account_id,
            "recipient_email": recipient.format(n=n),
            "recipient_name": "",
            "message_id_header": f"<{uuid.uuid4().hex}@charity.example>",
            "status": status,
            "attempts": fields.get("attempts", 1 if sent_at else 0),
            "due_at": due_at or created_at or now,
            "created_at": created_at or now,
            "updated_at": updated_at or sent_at or created_at or now,
            "sent_at": sent_at,
            "last_code": fields.get("last_code"),
            "last_response": fields.get("last_response"),
        }
        for n in range(count)
    ]
    if rows:
        db.session.execute(insert(Message), rows)


def add_daily(account: EmailAccount, day, sent: int, failed: int = 0) -> None:
    db.session.add(AccountDailyStats(account_id=account.id, day=day, sent=sent, failed=failed))


def minutes_ago(minutes: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(minutes=minutes)


# --- Reading pages -------------------------------------------------------------------------


class _Section(HTMLParser):
    """Collects the markup of the element with a given id (nested elements included)."""

    VOID = frozenset({"br", "img", "input", "meta", "link", "hr", "wbr", "source", "col"})

    def __init__(self, element_id: str) -> None:
        super().__init__(convert_charrefs=False)
        self.element_id = element_id
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if self.depth == 0 and dict(attrs).get("id") == self.element_id:
            self.depth = 1
            self.parts.append(self.get_starttag_text())
            return
        if self.depth:
            self.parts.append(self.get_starttag_text())
            if tag not in self.VOID:
                self.depth += 1

    def handle_startendtag(self, tag, attrs):
        if self.depth:
            self.parts.append(self.get_starttag_text())

    def handle_endtag(self, tag):
        if self.depth:
            self.parts.append(f"</{tag}>")
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)

    def handle_entityref(self, name):
        if self.depth:
            self.parts.append(f"&{name};")

    def handle_charref(self, name):
        if self.depth:
            self.parts.append(f"&#{name};")


def section(page: str, element_id: str) -> str:
    """The markup of the element with `element_id`; AssertionError when there is none."""
    parser = _Section(element_id)
    parser.feed(page)
    assert parser.parts, f"no element with id {element_id!r} on the page"
    return "".join(parser.parts)


def text(markup: str) -> str:
    """Visible text, tags dropped and whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def link(page: str, rel: str) -> str | None:
    """The URL of the page's link with `rel` ("next", "prev"), if there is one."""
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
    return unescape(found.group(1)) if found else None


def walk(browser, url: str | None, rel: str = "next") -> list[str]:
    """Every page from `url` on, following its `rel` links until there is none."""
    pages = []
    while url:
        pages.append(browser.get(url).get_data(as_text=True))
        url = link(pages[-1], rel)
    return pages


def definitions(markup: str) -> dict[str, str]:
    """<dt>term</dt><dd>value</dd> pairs as text."""
    pairs = re.findall(r"<dt[^>]*>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", markup, re.DOTALL)
    return {text(term): text(value) for term, value in pairs}
