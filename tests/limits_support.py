"""Helpers for the limiter and flagged-send tests: accounts, sends and sent-log rows made
directly in the database, and the bodies of the processes that race for one account."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from lamplight_mail import create_app
from lamplight_mail.delivery import limits
from lamplight_mail.delivery.mime import new_message_id
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountKind,
    AuthMethod,
    EmailAccount,
    Message,
    MessageStatus,
    Security,
    Send,
    SendStatus,
    User,
    utcnow,
)


def make_account(
    owner: User | None = None,
    daily_limit: int = 10_000,
    per_minute_limit: int = 1_000,
    connection_cap: int = 3,
    reserve_percent: int = 0,
    from_email: str = "office@charity.example",
) -> EmailAccount:
    account = EmailAccount(
        kind=AccountKind.OPERATOR if owner else AccountKind.SYSTEM,
        owner_id=owner.id if owner else None,
        default_for_operators=owner is None,
        provider="office365",
        host="smtp.office365.com",
        port=587,
        auth_method=AuthMethod.LOGIN,
        security=Security.TLS,
        username=from_email,
        from_email=from_email,
        from_name="Charity Office",
        daily_limit=daily_limit,
        per_minute_limit=per_minute_limit,
        max_recipients=500,
        connection_cap=connection_cap,
        reserve_percent=reserve_percent,
    )
    db.session.add(account)
    db.session.flush()
    return account


def make_send(
    user: User,
    account: EmailAccount,
    recipients: Iterable[tuple[str, str]],
    status: SendStatus = SendStatus.QUEUED,
    message_status: MessageStatus = MessageStatus.PENDING,
    sent_at: datetime | None = None,
    subject: str = "Winter appeal",
    flag_reason: str | None = None,
) -> Send:
    """A send and one message per (address, name), written straight to the database."""
    recipients = list(recipients)
    send = Send(
        user_id=user.id,
        account_id=account.id,
        subject=subject,
        body_text="Thank you for your support.",
        status=status,
        recipient_count=len(recipients),
        flag_reason=flag_reason,
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
    return [(f"person{i}@{domain}", f"Person {i}") for i in range(count)]


def record_sent(user: User, account: EmailAccount, count: int, sent_at: datetime | None = None):
    """`count` recipients already sent through the account at `sent_at` (default now)."""
    return make_send(
        user,
        account,
        people(count, "sent.example.org"),
        status=SendStatus.DONE,
        message_status=MessageStatus.SENT,
        sent_at=sent_at or utcnow(),
    )


# --- Bodies of racing processes (spawned: they import this module and build their own app) ---


def acquire_until_empty(config: dict, account_id: int, work, results, rounds: int, barrier):
    """Each round: take due messages off `work` until it is empty, asking the limiter for each;
    report (round, allowed, now ms, not-before ms) per message."""
    app = create_app(config)
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        db.session.expunge(account)
        db.session.remove()
        for number in range(rounds):
            barrier.wait()
            while True:
                item = work.get()
                if item is None:
                    break
                decision = limits.acquire(account)
                not_before = decision.not_before and _ms(decision.not_before)
                results.put((number, decision.allowed, _ms(decision.now), not_before))
            barrier.wait()


def acquire_paced(config: dict, account_id: int, work, results):
    """Send every message handed out, waiting for the limiter's moment whenever refused."""
    app = create_app(config)
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        db.session.expunge(account)
        db.session.remove()
        while work.get() is not None:
            while not (decision := limits.acquire(account)).allowed:
                time.sleep(max(0.0, (decision.not_before - decision.now).total_seconds()))
            results.put(_ms(decision.now))


def hold_connections(config: dict, account_id: int, holds: int, state, lock) -> None:
    """Hold `holds` connection slots one after another, noting how many are held at once."""
    app = create_app(config)
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        db.session.expunge(account)
        db.session.remove()
        done = 0
        while done < holds:
            with limits.connection_slot(account) as slot:
                if slot is None:
                    time.sleep(0.005)
                    continue
                with lock:
                    state[0] += 1
                    state[1] = max(state[1], state[0])
                time.sleep(0.02)
                assert slot.renew()
                with lock:
                    state[0] -= 1
            done += 1


def _ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


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
