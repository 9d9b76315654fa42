"""Proving an account works: a connection test and a test email, each with the server's own
answers and advice, audited."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis

from lamplight_mail import audit, crypto, org_time
from lamplight_mail.accounts import health
from lamplight_mail.accounts.editing import clear_text_auth_refused
from lamplight_mail.accounts.resolution import connection_settings
from lamplight_mail.delivery import limits, rollups
from lamplight_mail.delivery.mime import build_message, new_message_id, to_bytes
from lamplight_mail.delivery.transports import open_transport
from lamplight_mail.delivery.transports.base import Answer, TransportFailure
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    EmailAccount,
    Message,
    MessageStatus,
    Send,
    SendStatus,
    User,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """What a connection test or test email found: the server's own answers, plus advice."""

    ok: bool
    answer: str  # the server's last answer, or what happened on the network
    transcript: list[str] = field(default_factory=list)
    stage: str | None = None
    hint: str | None = None


def _failed(answer: Answer) -> CheckResult:
    return CheckResult(False, str(answer), stage=answer.stage, hint=answer.hint)


_UNREADABLE = CheckResult(
    False,
    "the stored password cannot be decrypted with the configured keys",
    stage="password",
    hint="The key it was encrypted with is no longer configured: enter the password again.",
)


def _refused_in_clear(account: EmailAccount) -> CheckResult | None:
    """An account saved before passwords in clear were refused is not tested with one."""
    reason = clear_text_auth_refused(account.host, account.security, account.auth_method)
    if reason is None:
        return None
    return CheckResult(
        False, "not attempted: no password is sent unencrypted", stage="security", hint=reason
    )


def check_connection(account: EmailAccount) -> CheckResult:
    """Connect, secure and sign in as the account would to send, then say how it went.
    Bounded by SMTP_TIMEOUT_SECONDS per step. Sets the account's status (a success resumes a
    paused account: only its owner or an admin may test it). Audited (the caller commits)."""
    refused = _refused_in_clear(account)
    if refused is not None:
        _record_check("account.tested", "Connection test", account, refused, {})
        return refused
    try:
        with open_transport(connection_settings(account)) as transport:
            transcript = list(transport.transcript)
        result = CheckResult(True, transcript[-1], transcript)
    except TransportFailure as failure:
        result = _failed(failure.answer)
    except crypto.SecretUnreadable:
        result = _UNREADABLE
    _record_check("account.tested", "Connection test", account, result, {})
    return result


TEST_SUBJECT = "Test message from Lamplight Mail"


def send_test_email(account: EmailAccount, to: str, requested_by: User) -> CheckResult:
    """Send one real message through the account now. It counts against the account's limits
    like any message (the provider counts it) and is written to the delivery log as a send of
    one. Sets the account's status like check_connection. Audited (the caller commits)."""
    refused = _refused_in_clear(account)
    if refused is not None:
        _record_check("account.test_email", f"Test email to {to}", account, refused, {"to": to})
        return refused
    try:
        decision = limits.acquire(account)
    except redis.RedisError as error:
        log.warning("account %s: the limiter cannot be reached: %s", account.id, error)
        return _NO_LIMITER
    if not decision.allowed:
        return _no_room(decision)
    message_id = new_message_id(account.from_email)
    message = build_message(
        from_email=account.from_email,
        from_name=account.from_name,
        to_email=to,
        to_name="",
        subject=TEST_SUBJECT,
        body_text=_test_body(account, requested_by),
        message_id=message_id,
    )
    answer: Answer | None = None
    try:
        with open_transport(connection_settings(account)) as transport:
            answer = transport.deliver(account.from_email, [to], to_bytes(message))
            transcript = [*transport.transcript, str(answer)]
        result = CheckResult(True, str(answer), transcript) if answer.accepted else _failed(answer)
    except TransportFailure as failure:
        result = _failed(failure.answer)
    except crypto.SecretUnreadable:
        result = _UNREADABLE
    if not result.ok and decision.reservation is not None:
        try:
            limits.refund(decision.reservation)  # the provider did not take it
        except redis.RedisError as error:
            log.warning("account %s: the limiter cannot be reached: %s", account.id, error)
    _log_test_email(account, requested_by, to, message_id, result, answer)
    _record_check("account.test_email", f"Test email to {to}", account, result, {"to": to})
    return result


def _test_body(account: EmailAccount, requested_by: User) -> str:
    return (
        f"{requested_by.name} sent this message from Lamplight Mail to check the settings "
        f"of the email account {account.from_email}.\n\n"
        "It arrived, so Lamplight can send email through this account.\n"
    )


_NO_LIMITER = CheckResult(
    False,
    "the sending limiter (Redis) did not answer, so nothing was sent",
    stage="limits",
    hint="Every message is counted against the account's limits before it goes. Check that "
    "Redis is running, then try again.",
)


def _no_room(decision: limits.Decision) -> CheckResult:
    when = f" until {org_time.shown(decision.not_before)}" if decision.not_before else ""
    return CheckResult(
        False,
        f"the account's sending limits leave no room now{when}, so nothing was sent",
        stage="limits",
        hint="A test email counts like any message. Try again later, or test the connection, "
        "which sends nothing.",
    )


def _log_test_email(
    account: EmailAccount,
    requested_by: User,
    to: str,
    message_id: str,
    result: CheckResult,
    answer: Answer | None,
) -> None:
    """The test email as a send of one in the delivery log, counted in the day's figures."""
    now = utcnow()
    send = Send(
        user_id=requested_by.id,
        account_id=account.id,
        subject=TEST_SUBJECT,
        body_text=_test_body(account, requested_by),
        status=SendStatus.DONE,
        recipient_count=1,
        created_at=now,
        finished_at=now,
    )
    db.session.add(send)
    db.session.flush()
    db.session.add(
        Message(
            send_id=send.id,
            account_id=account.id,
            recipient_email=to,
            message_id_header=message_id,
            status=MessageStatus.SENT if result.ok else MessageStatus.FAILED,
            attempts=1,
            due_at=now,
            last_code=answer.code if answer is not None else None,
            last_response=result.answer,
            created_at=now,
            sent_at=now if result.ok else None,
        )
    )
    rollups.record_outcome(account.id, now, sent=int(result.ok), failed=int(not result.ok))


def _record_check(
    action: str, what: str, account: EmailAccount, result: CheckResult, details: dict[str, object]
) -> None:
    if result.ok:
        health.record_success(account, result.answer, resumes=True)
    else:
        health.record_failure(account, result.answer, result.hint)
    outcome = "succeeded" if result.ok else "failed"
    log.info("%s %s for account %s: %s", what, outcome, account.id, result.answer)
    audit.record(
        action,
        "email_account",
        account.id,
        f"{what} {outcome} for {account.label}",
        {**details, "ok": result.ok, "answer": result.answer},
    )
