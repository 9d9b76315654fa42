"""Proving an account works: a connection test and a test email, each with the server's own
answers and advice, audited."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from lamplight_mail import audit, crypto
from lamplight_mail.accounts.resolution import connection_settings
from lamplight_mail.delivery.mime import build_message, new_message_id, to_bytes
from lamplight_mail.delivery.transports import open_transport
from lamplight_mail.delivery.transports.base import Answer, TransportFailure
from lamplight_mail.models import EmailAccount, User

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


def check_connection(account: EmailAccount) -> CheckResult:
    """Connect, secure and sign in as the account would to send, then say how it went.
    Bounded by SMTP_TIMEOUT_SECONDS per step. Audited (the caller commits)."""
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


def send_test_email(account: EmailAccount, to: str, requested_by: User) -> CheckResult:
    """Send one real message through the account now. Audited (the caller commits)."""
    message = build_message(
        from_email=account.from_email,
        from_name=account.from_name,
        to_email=to,
        to_name="",
        subject="Test message from Lamplight Mail",
        body_text=(
            f"{requested_by.name} sent this message from Lamplight Mail to check the settings "
            f"of the email account {account.from_email}.\n\n"
            "It arrived, so Lamplight can send email through this account.\n"
        ),
        message_id=new_message_id(account.from_email),
    )
    try:
        with open_transport(connection_settings(account)) as transport:
            answer = transport.deliver(account.from_email, [to], to_bytes(message))
            transcript = [*transport.transcript, str(answer)]
        result = CheckResult(True, str(answer), transcript) if answer.accepted else _failed(answer)
    except TransportFailure as failure:
        result = _failed(failure.answer)
    except crypto.SecretUnreadable:
        result = _UNREADABLE
    _record_check("account.test_email", f"Test email to {to}", account, result, {"to": to})
    return result


def _record_check(
    action: str, what: str, account: EmailAccount, result: CheckResult, details: dict[str, object]
) -> None:
    outcome = "succeeded" if result.ok else "failed"
    log.info("%s %s for account %s: %s", what, outcome, account.id, result.answer)
    audit.record(
        action,
        "email_account",
        account.id,
        f"{what} {outcome} for {account.label}",
        {**details, "ok": result.ok, "answer": result.answer},
    )
