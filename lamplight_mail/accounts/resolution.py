"""Which account is which (the single account, an operator's own, the one a send uses) and how
to reach it."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import Select, func, select
from sqlalchemy.orm import contains_eager

from lamplight_mail import crypto
from lamplight_mail.delivery.transports.base import ConnectionSettings
from lamplight_mail.extensions import db
from lamplight_mail.models import AccountKind, EmailAccount, Transport, User
from lamplight_mail.oauth import tokens


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
    """The account `user`'s sends go through now (see `sending_account`)."""
    return sending_account(own_account(user), system_account())


def sending_account(own: EmailAccount | None, shared: EmailAccount | None) -> EmailAccount | None:
    """The sender's own account when it can send (untested, ready or failing: not paused nor
    waiting), else the single account when it is the default for operators, else None
    (compose then says no account is set up). A list of users reads the single account once
    and asks this for each."""
    if own is not None and own.can_send:
        return own
    if shared is not None and shared.default_for_operators:
        return shared
    return None


def connection_settings(account: EmailAccount) -> ConnectionSettings:
    """Everything needed to connect, the password decrypted only here, only when sending; an
    OAuth 2.0 account's access tokens are had when the transport asks for them."""
    password = crypto.decrypt(account.password_encrypted) if account.has_password else None
    oauth = account.is_oauth
    return ConnectionSettings(
        host=account.host,
        port=account.port,
        security=account.security,
        auth_method=account.auth_method,
        # XOAUTH2 names the mailbox; the username is usually it, else the From address is.
        username=account.username or (account.from_email if oauth else ""),
        password=password,
        timeout=current_app.config["SMTP_TIMEOUT_SECONDS"],
        token_source=tokens.token_source(account) if oauth else None,
        transport=account.transport.value if oauth else Transport.SMTP.value,
        graph_url=current_app.config["GRAPH_URL"],
        graph_mailbox="me" if account.is_delegated else account.from_email,
    )
