"""Saving and removing email accounts: settings as an admin enters them, write-only passwords
(replaced only on purpose, or left for the operator), and removal that keeps history. Audited;
callers commit."""

from __future__ import annotations

import enum
import logging
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from lamplight_mail import audit, crypto
from lamplight_mail.accounts import health
from lamplight_mail.accounts.resolution import own_account, system_account
from lamplight_mail.delivery.transports.base import is_loopback
from lamplight_mail.extensions import db
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
from lamplight_mail.wording import plural

log = logging.getLogger(__name__)


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
    REMOVE = "remove"  # clear it on purpose (authentication none needs no password)


@dataclass(frozen=True)
class PasswordChange:
    action: PasswordAction
    new_password: str | None = field(default=None, repr=False)


class AccountConflict(ValueError):
    """The change would break "one single account" or "one account per person"."""


class PasswordNeeded(AccountConflict):
    """The account would send its stored password somewhere it was not typed for."""


# Where the stored password goes and as whom: change any of them and the password must be
# typed again, or an admin could point an account at their own server, keep the password an
# operator typed, press Test and read it there.
CONNECTION_FIELDS = ("host", "port", "security", "auth_method", "username")


def changed_connection_fields(account: EmailAccount, values: AccountValues) -> list[str]:
    """Which of CONNECTION_FIELDS `values` changes for the saved `account`."""
    return [name for name in CONNECTION_FIELDS if getattr(account, name) != getattr(values, name)]


def clear_text_auth_refused(host: str, security: Security, auth_method: AuthMethod) -> str | None:
    """Why the settings would send a password unencrypted over a network, or None."""
    if security != Security.NONE or auth_method == AuthMethod.NONE or is_loopback(host):
        return None
    return (
        "With SSL type None the password would cross the network unencrypted: choose TLS or "
        "SSL, or authentication None for a relay that does not ask for a password. Only a "
        "relay on this machine (localhost, 127.0.0.1) may take a password without encryption."
    )


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
    refused = clear_text_auth_refused(values.host, values.security, values.auth_method)
    if refused:
        raise AccountConflict(refused)
    if (
        not creating
        and account.has_password
        and password.action == PasswordAction.KEEP
        and values.auth_method.sends_password
        and changed_connection_fields(account, values)
    ):
        raise PasswordNeeded(
            "The server settings changed: type the account's password again. The stored "
            "password is only ever sent to the server it was typed for."
        )
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
        health.settings_changed(account, set(changes))
        audit.record(
            "account.updated",
            "email_account",
            account.id,
            f"Changed the {audit.describe_fields(list(changes))} of {account.label}",
            changes,
        )
    return account


def set_own_password(account: EmailAccount, password: str) -> None:
    """The owner types their own password (the admin set everything else)."""
    set_password(account, password)
    health.settings_changed(account, {"password"})
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
    if not auth_method.sends_password or change.action in (
        PasswordAction.LEAVE_TO_OPERATOR,
        PasswordAction.REMOVE,
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
    return Removal([u for u in users if u.account is None or not u.account.can_send], None)


def remove_account(account: EmailAccount) -> None:
    """Archive the account: it stops being used, its secret is dropped, its history stays."""
    waiting = open_sends(account)
    if waiting:
        raise AccountInUse(
            f"{plural(waiting, 'send')} still {'uses' if waiting == 1 else 'use'} this account "
            "(held, queued or going out). Wait for them to finish, or cancel them, before "
            "removing it."
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
