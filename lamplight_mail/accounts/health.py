"""An account's status as the pages show it, and the one place it changes: tests and the
worker's real outcomes record successes and failures here, answers about the account itself
pause it, and a successful test by its owner or an admin resumes it.

Whenever an account starts failing or pauses, the admins are told (accounts/alerts.py) once
the change is committed."""

from __future__ import annotations

from datetime import timedelta

from lamplight_mail import audit
from lamplight_mail.accounts import alerts
from lamplight_mail.delivery.transactions import write_transaction
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, utcnow

# A ready account's "last success" is refreshed by the worker at most this often: a delivery
# job writes it once, not once a message.
SUCCESS_REFRESH = timedelta(minutes=5)

# Settings whose change means what was proven no longer is: the account is untested again.
CONNECTION_SETTINGS = frozenset(
    {
        "host",
        "port",
        "auth_method",
        "security",
        "username",
        "from_email",
        "oauth_grant",
        "transport",
        "password",
        "sign_in",
    }
)


def settings_changed(account: EmailAccount, changed: set[str] | frozenset[str]) -> None:
    """After a save: changed connection settings (or a new password) are unproven."""
    if changed & CONNECTION_SETTINGS:
        account.last_outcome_ok = None


def record_success(account: EmailAccount, answer: str, *, resumes: bool = False) -> bool:
    """The account delivered, or passed a test (the caller commits). With `resumes` (a test by
    the owner or an admin) a paused account sends again. Returns True when it resumed."""
    account.last_outcome_ok = True
    account.last_success_at = utcnow()
    account.last_success_answer = answer
    return resumes and resume(account, why="a successful test")


def record_failure(account: EmailAccount, answer: str, advice: str | None) -> None:
    """A test or delivery failed for a reason about the account (it could not connect, sign in
    or was refused as a sender), not about one recipient. The caller commits."""
    newly_failing = account.last_outcome_ok is not False and account.paused_at is None
    account.last_outcome_ok = False
    account.last_failure_at = utcnow()
    account.last_failure_answer = answer
    account.last_failure_advice = advice
    if newly_failing:
        alerts.after_commit(account.id)


def pause(account: EmailAccount, reason: str, advice: str | None) -> None:
    """Hold the account's mail until a successful test or an admin resumes it (the caller
    commits). The answer is its last failure too."""
    if account.paused_at is not None:
        return
    record_failure(account, reason, advice)
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
    alerts.after_commit(account.id)


def resume(account: EmailAccount, why: str | None = None) -> bool:
    """Let the account send again (the caller commits; the worker's sweep picks held mail up).
    Returns False when it was not paused."""
    if account.paused_at is None:
        return False
    account.paused_at = None
    account.paused_reason = None
    account.paused_advice = None
    summary = f"Resumed {account.label}" + (f" after {why}" if why else "")
    audit.record("account.resumed", "email_account", account.id, summary)
    return True


# --- the worker's outcomes, each in its own short write transaction --------------------------


def needs_success_record(account: EmailAccount) -> bool:
    """Whether a delivery through the account (as the job read it) should be written down."""
    return not (
        account.last_outcome_ok
        and account.last_success_at is not None
        and utcnow() - account.last_success_at < SUCCESS_REFRESH
    )


def delivered(account_id: int, answer: str) -> None:
    """The worker delivered through the account (a paused account stays paused)."""
    with write_transaction():
        record_success(db.session.get(EmailAccount, account_id), answer)


def delivery_failed(account_id: int, answer: str, advice: str | None) -> None:
    """The worker could not deliver through the account (it could not connect or sign in)."""
    with write_transaction():
        record_failure(db.session.get(EmailAccount, account_id), answer, advice)


def delivery_paused(account_id: int, reason: str, advice: str | None) -> None:
    """The worker met an answer about the account itself: hold its mail."""
    with write_transaction():
        pause(db.session.get(EmailAccount, account_id), reason, advice)
