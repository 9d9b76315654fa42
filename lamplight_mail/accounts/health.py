"""Whether an account may send: pausing it when its server says the account itself is blocked,
and resuming it."""

from __future__ import annotations

from lamplight_mail import audit
from lamplight_mail.models import EmailAccount, utcnow


def pause(account: EmailAccount, reason: str, advice: str | None) -> None:
    """Hold the account's mail until an admin resumes it (the caller commits)."""
    if account.paused_at is not None:
        return
    account.paused_at = utcnow()
    account.paused_reason = reason
    account.paused_advice = advice
    audit.record(
        "account.paused",
        "email_account",
        account.id,
        f"Paused {account.label}: {reason}",
        {"reason": reason},
    )


def resume(account: EmailAccount) -> bool:
    """Let the account send again (the caller commits; the worker's sweep picks held mail up).
    Returns False when it was not paused."""
    if account.paused_at is None:
        return False
    account.paused_at = None
    account.paused_reason = None
    account.paused_advice = None
    audit.record("account.resumed", "email_account", account.id, f"Resumed {account.label}")
    return True
