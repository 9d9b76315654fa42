"""Email accounts as services: which account a send uses, how to reach it, pausing it.

Free of Flask request objects: the web views and the worker both call these.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from lamplight_mail import audit, crypto
from lamplight_mail.extensions import db
from lamplight_mail.models import AccountKind, EmailAccount, User, utcnow
from lamplight_mail.smtp import ConnectionSettings


def system_account() -> EmailAccount | None:
    return db.session.scalar(select(EmailAccount).where(EmailAccount.kind == AccountKind.SYSTEM))


def own_account(user: User) -> EmailAccount | None:
    return db.session.scalar(select(EmailAccount).where(EmailAccount.owner_id == user.id))


def resolve_sending_account(user: User) -> EmailAccount | None:
    """The sender's own account when it is ready, else the single account when it is the
    default for operators, else None (compose then says no account is set up)."""
    own = own_account(user)
    if own is not None and own.is_ready:
        return own
    shared = system_account()
    if shared is not None and shared.default_for_operators:
        return shared
    return None


def set_password(account: EmailAccount, password: str) -> None:
    account.password_encrypted = crypto.encrypt(password)


def connection_settings(account: EmailAccount) -> ConnectionSettings:
    """Everything needed to connect, the password decrypted only here, only when sending."""
    password = crypto.decrypt(account.password_encrypted) if account.has_password else None
    return ConnectionSettings(
        host=account.host,
        port=account.port,
        security=account.security,
        auth_method=account.auth_method,
        username=account.username,
        password=password,
        timeout=current_app.config["SMTP_TIMEOUT_SECONDS"],
    )


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


def resume(account: EmailAccount) -> None:
    """Let the account send again (the caller commits, then wakes the queue)."""
    account.paused_at = None
    account.paused_reason = None
    account.paused_advice = None
    audit.record("account.resumed", "email_account", account.id, f"Resumed {account.label}")
