"""Flagged sends as the admin sees them: the figures behind the decision to release, and the
export that moves a bulk send to MailChimp instead."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload

from lamplight_mail.delivery import limits
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, Message, Send, SendStatus

# MailChimp's audience import recognises these column names as its default merge fields.
MAILCHIMP_COLUMNS = ("Email Address", "First Name", "Last Name")
# Dropped from the front of a name: MailChimp has no field for them.
HONORIFICS = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "rev", "revd", "sir", "dame", "lady", "lord"}
)
# A spreadsheet opened on the way to MailChimp would run a cell starting with these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class FlaggedSend:
    send: Send
    available: int  # recipients the account could take now, after what is already waiting
    allowance: int  # the account's daily limit less its reserve
    finish: datetime | None  # when the last message would go if released now

    @property
    def larger_than_a_day(self) -> bool:
        return self.send.recipient_count > self.allowance


def flagged_sends() -> Select:
    """Flagged sends, the longest waiting first."""
    return (
        select(Send)
        .where(Send.status == SendStatus.FLAGGED)
        .options(joinedload(Send.user), joinedload(Send.account).joinedload(EmailAccount.owner))
        .order_by(Send.created_at, Send.id)
    )


def describe(sends: list[Send]) -> list[FlaggedSend]:
    """The figures for each send, reading each account's window once."""
    available: dict[int, int] = {}
    waiting: dict[int, int] = {}
    described = []
    for send in sends:
        account = send.account
        if account.id not in available:
            waiting[account.id] = limits.outstanding(account)
            available[account.id] = max(0, limits.usage(account).remaining - waiting[account.id])
        described.append(
            FlaggedSend(
                send=send,
                available=available[account.id],
                allowance=limits.allowance(account),
                finish=limits.estimate_finish(
                    account, send.recipient_count, ahead=waiting[account.id]
                ),
            )
        )
    return described


def split_name(name: str) -> tuple[str, str]:
    """First and last name from one stored name: "Lovelace, Ada" and "Dr Ada Lovelace" both give
    ("Ada", "Lovelace"); particles stay with the surname ("Ludwig van Beethoven")."""
    name = " ".join(name.split())
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    words = name.split(" ")
    while len(words) > 1 and words[0].rstrip(".").lower() in HONORIFICS:
        words = words[1:]
    if not words or not words[0]:
        return "", ""
    return words[0], " ".join(words[1:])


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def mailchimp_csv(send: Send) -> str:
    """The send's recipients as a MailChimp audience import: UTF-8 text, one row each."""
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\r\n")
    writer.writerow(MAILCHIMP_COLUMNS)
    rows = db.session.execute(
        select(Message.recipient_email, Message.recipient_name)
        .where(Message.send_id == send.id)
        .order_by(Message.id)
    )
    for email, name in rows:
        first, last = split_name(name or "")
        writer.writerow((email, _cell(first), _cell(last)))
    return output.getvalue()
