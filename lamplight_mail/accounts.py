"""Email accounts as services: saving and removing them, which account a send uses, how to reach
it, checking it, pausing it.

Free of Flask request objects: the web views and the worker both call these. Callers commit.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import asdict, dataclass, field

from flask import current_app
from sqlalchemy import Select, func, select
from sqlalchemy.orm import contains_eager, selectinload

from lamplight_mail import audit, crypto, smtp
from lamplight_mail.extensions import db
from lamplight_mail.messages import build_message, new_message_id, to_bytes
from lamplight_mail.models import (
    AccountKind,
    AuthMethod,
    EmailAccount,
    OAuthGrant,
    Security,
    Send,
    SendStatus,
    Transport,
    User,
    utcnow,
)
from lamplight_mail.smtp import ConnectionSettings, SMTPFailure

log = logging.getLogger(__name__)


# --- finding accounts ----------------------------------------------------------------------


def system_account() -> EmailAccount | None:
    return db.session.scalar(
        select(EmailAccount).where(
            EmailAccount.kind == AccountKind.SYSTEM, EmailAccount.archived_at.is_(None)
        )
    )


def own_account(user: User) -> EmailAccount | None:
    # Archiving detaches the owner, so an owned account is always a live one.
    return db.session.scalar(select(EmailAccount).where(EmailAccount.owner_id == user.id))


def live_account(account_id: int) -> EmailAccount | None:
    account = db.session.get(EmailAccount, account_id)
    return account if account is not None and account.archived_at is None else None


_LIVE_OPERATOR_ACCOUNT = (
    EmailAccount.kind == AccountKind.OPERATOR,
    EmailAccount.archived_at.is_(None),
)


def operator_accounts_query(paused_first: bool = False) -> Select:
    """Live individual accounts with their owners, by owner name."""
    order = (EmailAccount.paused_at.is_(None),) if paused_first else ()
    return (
        select(EmailAccount)
        .join(EmailAccount.owner)
        .options(contains_eager(EmailAccount.owner))
        .where(*_LIVE_OPERATOR_ACCOUNT)
        .order_by(*order, User.name, EmailAccount.id)
    )


def count_operator_accounts() -> int:
    return db.session.scalar(
        select(func.count()).select_from(EmailAccount).where(*_LIVE_OPERATOR_ACCOUNT)
    )


def users_without_account() -> list[User]:
    """Active users who could be given an individual account."""
    return list(
        db.session.scalars(
            select(User)
            .where(User.is_active_user, ~User.account.has())
            .order_by(User.name, User.id)
        )
    )


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


# --- saving --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountValues:
    """An account's settings as an admin enters them (everything but the password)."""

    provider: str
    host: str
    port: int
    auth_method: AuthMethod
    security: Security
    username: str
    from_email: str
    from_name: str
    daily_limit: int
    per_minute_limit: int
    max_recipients: int
    connection_cap: int
    reserve_percent: int
    # Modern authentication (auth_method oauth2 only; otherwise None and smtp).
    oauth_grant: OAuthGrant | None = None
    transport: Transport = Transport.SMTP


class PasswordAction(enum.StrEnum):
    KEEP = "keep"
    REPLACE = "replace"
    LEAVE_TO_OPERATOR = "operator"  # clear it: the owner types their own at /my/email


@dataclass(frozen=True)
class PasswordChange:
    action: PasswordAction
    new_password: str | None = field(default=None, repr=False)


class AccountConflict(ValueError):
    """The change would break "one single account" or "one account per person"."""


def save_account(
    account: EmailAccount | None,
    kind: AccountKind,
    values: AccountValues,
    password: PasswordChange,
    *,
    owner: User | None = None,
    default_for_operators: bool | None = None,
) -> EmailAccount:
    """Create the account (`account=None`) or update it, and record what changed.

    `owner` is for individual accounts, `default_for_operators` for the single account."""
    creating = account is None
    if creating:
        if kind == AccountKind.SYSTEM and system_account() is not None:
            raise AccountConflict("There is already a single account for all operators.")
        if kind == AccountKind.OPERATOR and owner is None:
            raise AccountConflict("An individual account needs someone to send through it.")
        account = EmailAccount(kind=kind, default_for_operators=False)
    if owner is not None:
        _check_owner_free(owner, account)
    before = {} if creating else _audit_values(account)
    signed_in_for = None if creating else _sign_in_scope(account)
    for name, value in asdict(values).items():
        setattr(account, name, value)
    if owner is not None and kind == AccountKind.OPERATOR:
        account.owner = owner
    if default_for_operators is not None and kind == AccountKind.SYSTEM:
        account.default_for_operators = default_for_operators
    password_changed = _apply_password(account, values.auth_method, password)
    sign_in_dropped = signed_in_for is not None and signed_in_for != _sign_in_scope(account)
    if sign_in_dropped:
        # A sign-in is for one provider, grant and transport: another needs a new sign-in.
        account.refresh_token_encrypted = None
        account.signed_in_at = None
    if creating:
        db.session.add(account)
        db.session.flush()  # the id, for the audit trail
    changes: dict[str, object] = {
        name: value
        for name, value in _audit_values(account).items()
        if creating or before[name] != value
    }
    if password_changed:
        changes["password"] = True
    if sign_in_dropped:
        changes["sign_in"] = "needed again"
    if creating:
        audit.record(
            "account.created", "email_account", account.id, f"Added {account.label}", changes
        )
    elif changes:
        audit.record(
            "account.updated",
            "email_account",
            account.id,
            f"Changed {', '.join(changes)} of {account.label}",
            changes,
        )
    return account


def set_own_password(account: EmailAccount, password: str) -> None:
    """The owner types their own password (the admin set everything else)."""
    set_password(account, password)
    audit.record(
        "account.password_set",
        "email_account",
        account.id,
        f"Set the password of {account.label}",
        {"password": True},
    )


def set_password(account: EmailAccount, password: str) -> None:
    account.password_encrypted = crypto.encrypt(password)


def _check_owner_free(owner: User, account: EmailAccount | None) -> None:
    existing = own_account(owner)
    if existing is not None and existing is not account:
        raise AccountConflict(f"{owner.name} already has an individual account.")


def _sign_in_scope(account: EmailAccount) -> tuple[object, ...] | None:
    """What a stored delegated sign-in was given for, or None when there is none."""
    if account.refresh_token_encrypted is None:
        return None
    return (account.auth_method, account.oauth_provider, account.oauth_grant, account.transport)


def _apply_password(account: EmailAccount, auth_method: AuthMethod, change: PasswordChange) -> bool:
    """Returns whether the stored password changed (set, replaced or removed)."""
    if (
        auth_method in (AuthMethod.NONE, AuthMethod.OAUTH2)
        or change.action == PasswordAction.LEAVE_TO_OPERATOR
    ):
        # No secret is kept that nothing will use.
        removed = account.password_encrypted is not None
        account.password_encrypted = None
        return removed
    if change.action == PasswordAction.REPLACE and change.new_password:
        set_password(account, change.new_password)
        return True
    return False


def _audit_values(account: EmailAccount) -> dict[str, object]:
    """The account's settings in plain values, never the password."""
    values: dict[str, object] = {
        name: getattr(account, name) for name in AccountValues.__dataclass_fields__
    }
    values["auth_method"] = account.auth_method.value
    values["security"] = account.security.value
    values["oauth_grant"] = account.oauth_grant.value if account.oauth_grant else None
    values["transport"] = account.transport.value if account.transport else Transport.SMTP.value
    values["owner"] = account.owner.email if account.owner else None
    values["default_for_operators"] = account.default_for_operators
    return values


def port_warning(port: int, security: Security, auth_method: AuthMethod) -> str | None:
    """A settings combination that is allowed but almost always a mistake."""
    if port == 465 and security == Security.TLS:
        return "Port 465 normally expects SSL type SSL (implicit TLS), not TLS (STARTTLS)."
    if port == 587 and security == Security.SSL:
        return "Port 587 normally expects SSL type TLS (STARTTLS), not SSL."
    if security == Security.NONE and auth_method != AuthMethod.NONE:
        return (
            "With SSL type none the password crosses the network unencrypted: use TLS or SSL "
            "unless this is a relay on your own network."
        )
    return None


# --- removing ------------------------------------------------------------------------------


class AccountInUse(ValueError):
    """Mail is still waiting to go through the account."""


def open_sends(account: EmailAccount) -> int:
    """Sends not finished with this account: held (flagged), queued or going out."""
    return db.session.scalar(
        select(func.count())
        .select_from(Send)
        .where(
            Send.account_id == account.id,
            Send.status.in_([SendStatus.FLAGGED, SendStatus.QUEUED, SendStatus.SENDING]),
        )
    )


@dataclass(frozen=True)
class Removal:
    """Who a removal affects: those who lose this account, and where their mail goes next."""

    affected: list[User]
    fallback: EmailAccount | None  # the single account they fall back to, if any


def removal_effect(account: EmailAccount) -> Removal:
    if account.kind == AccountKind.OPERATOR:
        shared = system_account()
        fallback = shared if shared is not None and shared.default_for_operators else None
        return Removal([account.owner] if account.owner else [], fallback)
    if not account.default_for_operators:
        return Removal([], None)
    # Everyone whose own account is missing or not ready sends through the default account.
    users = db.session.scalars(
        select(User)
        .options(selectinload(User.account))
        .where(User.is_active_user)
        .order_by(User.name, User.id)
    ).all()
    return Removal([u for u in users if u.account is None or not u.account.is_ready], None)


def remove_account(account: EmailAccount) -> None:
    """Archive the account: it stops being used, its secret is dropped, its history stays."""
    waiting = open_sends(account)
    if waiting:
        raise AccountInUse(
            f"{waiting} send(s) still use this account (held, queued or going out). Wait for "
            "them to finish, or cancel them, before removing it."
        )
    owner = account.owner
    audit.record(
        "account.removed",
        "email_account",
        account.id,
        f"Removed {account.label}",
        {
            "kind": account.kind.value,
            "from_email": account.from_email,
            "owner": owner.email if owner else None,
        },
    )
    account.archived_at = utcnow()
    account.owner = None
    account.default_for_operators = False
    account.password_encrypted = None
    account.refresh_token_encrypted = None


# --- using and checking --------------------------------------------------------------------


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


@dataclass(frozen=True)
class CheckResult:
    """What a connection test or test email found: the server's own answers, plus advice."""

    ok: bool
    answer: str  # the server's last answer, or what happened on the network
    transcript: list[str] = field(default_factory=list)
    stage: str | None = None
    hint: str | None = None


def _failed(failure: SMTPFailure) -> CheckResult:
    answer = f"{failure.code} {failure.answer}" if failure.code else failure.answer
    return CheckResult(False, answer, stage=failure.stage, hint=failure.hint)


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
        with smtp.connect(connection_settings(account)) as connection:
            transcript = list(connection.transcript)
        result = CheckResult(True, transcript[-1], transcript)
    except SMTPFailure as failure:
        result = _failed(failure)
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
        with smtp.connect(connection_settings(account)) as connection:
            answer = connection.deliver(account.from_email, [to], to_bytes(message))
            result = CheckResult(True, answer, [*connection.transcript, answer])
    except SMTPFailure as failure:
        result = _failed(failure)
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


# --- pausing -------------------------------------------------------------------------------


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
