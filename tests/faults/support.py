"""Helpers for the fault tests: composing, counting what the servers received, running workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import select

from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, Message, MessageStatus, Send, User, utcnow
from lamplight_mail.recipients import Recipient
from tests.factories import statuses
from tests.smtp_servers import Recorder
from tests.workers import wait_until


def addresses(count: int, domain: str) -> list[str]:
    return [f"person{i}@{domain}" for i in range(count)]


def compose(user: User, account: EmailAccount, people: Iterable[str]) -> Send:
    recipients = [Recipient(address, "") for address in people]
    return outbox.create_send(user, account, recipients, "Hello", "Dear friend")


def recipients_with(status: MessageStatus, *sends: Send) -> set[str]:
    db.session.rollback()  # a fresh read: the workers wrote in other processes
    return set(
        db.session.scalars(
            select(Message.recipient_email).where(
                Message.send_id.in_([send.id for send in sends]), Message.status == status
            )
        )
    )


def message(send: Send, address: str) -> Message:
    db.session.rollback()
    return db.session.scalars(
        select(Message).where(Message.send_id == send.id, Message.recipient_email == address)
    ).one()


def assert_given_back(send: Send, recorder: Recorder) -> None:
    """After a SIGTERM: the message on the wire was finished and marked sent, and the rest of
    the batch went back to the queue untried, due at once."""
    db.session.rollback()
    messages = db.session.scalars(select(Message).where(Message.send_id == send.id)).all()
    sent = {m.recipient_email for m in messages if m.status == MessageStatus.SENT}
    rest = [m for m in messages if m.status != MessageStatus.SENT]
    assert sent == set(recorder.recipients())
    assert rest, "the batch was finished before the signal"
    assert {m.status for m in rest} == {MessageStatus.QUEUED}
    assert {(m.attempts, m.lease_owner) for m in rest} == {(0, None)}
    assert max(m.due_at for m in rest) <= utcnow()


def received(*recorders: Recorder) -> Counter[str]:
    return Counter(rcpt for recorder in recorders for rcpt in recorder.recipients())


def lost_and_duplicated(
    expected: set[str], sends: Iterable[Send], *recorders: Recorder
) -> tuple[int, int]:
    """Lost: expected to arrive, or marked sent, yet never received. Duplicated: every arrival
    after a recipient's first."""
    got = received(*recorders)
    marked_sent = recipients_with(MessageStatus.SENT, *sends)
    lost = len((expected | marked_sent) - set(got))
    return lost, sum(count - 1 for count in got.values())


def wait_for_statuses(send: Send, expected: dict[str, int], timeout: float = 90) -> None:
    """Until the send's messages are in `expected` ({status: count}); the failure says what
    they were instead."""
    seen: list[dict[str, int]] = [{}]

    def reached() -> bool:
        seen[0] = statuses(send.id)
        return seen[0] == expected

    try:
        wait_until(reached, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"send {send.id}: expected {expected}, still {seen[0]}") from None
