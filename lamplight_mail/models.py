"""The database schema: the source of truth for users, accounts, sends and every message."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from lamplight_mail.extensions import db


def utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite (no time zones) and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK, so adding a member is a small migration on both
    # databases and the values read naturally in SQL.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [m.value for m in members],
    )


class Role(enum.StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"


class AccountKind(enum.StrEnum):
    SYSTEM = "system"  # the single account for all operators
    OPERATOR = "operator"  # an individual operator's (or admin's) own account


class AuthMethod(enum.StrEnum):
    LOGIN = "login"
    PLAIN = "plain"
    NONE = "none"
    OAUTH2 = "oauth2"  # modern authentication: an access token instead of a password

    @property
    def sends_password(self) -> bool:
        """Whether signing in sends the stored password to the server."""
        return self in (AuthMethod.LOGIN, AuthMethod.PLAIN)


class OAuthGrant(enum.StrEnum):
    DELEGATED = "delegated"  # a person signs in once; a refresh token is kept
    APP = "app"  # Microsoft client credentials: the app itself, no person (the single account)


class Transport(enum.StrEnum):
    SMTP = "smtp"  # SMTP AUTH XOAUTH2 (or a password)
    GRAPH = "graph"  # Microsoft Graph sendMail, where SMTP AUTH is switched off


class Security(enum.StrEnum):
    TLS = "tls"  # STARTTLS
    SSL = "ssl"  # implicit TLS
    NONE = "none"


class AccountHealth(enum.StrEnum):
    UNTESTED = "untested"  # saved, never proven since its settings last changed
    READY = "ready"  # the last test or delivery succeeded
    FAILING = "failing"  # the last test or delivery failed: the answer and advice are kept
    WAITING_FOR_PASSWORD = "waiting_for_password"
    WAITING_FOR_SIGN_IN = "waiting_for_sign_in"
    PAUSED = "paused"

    @property
    def label(self) -> str:
        """As pages show it (CONTRACT.md, Account status)."""
        if self is AccountHealth.WAITING_FOR_SIGN_IN:
            return "waiting for sign-in"
        return self.value.replace("_", " ")


class SendStatus(enum.StrEnum):
    FLAGGED = "flagged"
    SCHEDULED = "scheduled"  # waiting for its send_at
    QUEUED = "queued"
    SENDING = "sending"
    DONE = "done"
    CANCELLED = "cancelled"


class MessageStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active_user: Mapped[bool] = mapped_column(Boolean, default=True)
    # Part of the session's user id (see get_id): bumping it ends every session of the user
    # (logout, password change, deactivation), since a cookie cannot be taken back.
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    account: Mapped[EmailAccount | None] = relationship(
        back_populates="owner", foreign_keys="EmailAccount.owner_id"
    )

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users at login
        return self.is_active_user

    def get_id(self) -> str:
        """What the session (and a remember cookie) holds: the id and the session version."""
        return f"{self.id}:{self.session_version}"

    def end_sessions(self) -> None:
        """Every session and remember cookie issued so far stops working (the caller commits)."""
        self.session_version = (self.session_version or 1) + 1

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class EmailAccount(db.Model):
    """An SMTP account mail leaves through: the single system account or an operator's own."""

    __tablename__ = "email_accounts"
    __table_args__ = (
        # At most one single account for all operators (archived ones are history only).
        Index(
            "uq_email_accounts_one_system",
            "kind",
            unique=True,
            sqlite_where=text("kind = 'system' AND archived_at IS NULL"),
            postgresql_where=text("kind = 'system' AND archived_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[AccountKind] = mapped_column(_enum(AccountKind, "account_kind"))
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    default_for_operators: Mapped[bool] = mapped_column(Boolean, default=False)

    provider: Mapped[str] = mapped_column(String(20), default="custom")
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    auth_method: Mapped[AuthMethod] = mapped_column(_enum(AuthMethod, "auth_method"))
    security: Mapped[Security] = mapped_column(_enum(Security, "security"))
    username: Mapped[str] = mapped_column(String(254), default="")
    # Fernet token (see crypto.py); never the password itself.
    password_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    from_email: Mapped[str] = mapped_column(String(254))
    from_name: Mapped[str] = mapped_column(String(120), default="")

    # Modern authentication (auth_method oauth2): how the token is had and how mail leaves.
    oauth_grant: Mapped[OAuthGrant | None] = mapped_column(_enum(OAuthGrant, "oauth_grant"))
    transport: Mapped[Transport] = mapped_column(
        _enum(Transport, "transport"), default=Transport.SMTP, server_default="smtp"
    )
    # Fernet token of the delegated grant's refresh token; never the token itself.
    refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    signed_in_at: Mapped[datetime | None] = mapped_column(DateTime)

    daily_limit: Mapped[int] = mapped_column(Integer)  # recipients per rolling 24 h
    per_minute_limit: Mapped[int] = mapped_column(Integer)  # messages per rolling minute
    max_recipients: Mapped[int] = mapped_column(Integer)  # recipients per message
    connection_cap: Mapped[int] = mapped_column(Integer, default=3)
    reserve_percent: Mapped[int] = mapped_column(Integer, default=0)

    paused_at: Mapped[datetime | None] = mapped_column(DateTime)
    paused_reason: Mapped[str | None] = mapped_column(Text)  # the server's answer
    paused_advice: Mapped[str | None] = mapped_column(Text)
    # What the last test or delivery proved (accounts/health.py sets them): None means
    # untested since the settings last changed. The last success and failure are kept apart so
    # the pages show both, each with when and the server's own answer.
    last_outcome_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_success_answer: Mapped[str | None] = mapped_column(Text)
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_failure_answer: Mapped[str | None] = mapped_column(Text)
    last_failure_advice: Mapped[str | None] = mapped_column(Text)
    # A removed account stays as a row, without owner or password, because sends and messages
    # refer to it: the delivery log keeps saying which account each message went through.
    archived_at: Mapped[datetime | None] = mapped_column(DateTime)

    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    owner: Mapped[User | None] = relationship(back_populates="account", foreign_keys=[owner_id])

    @property
    def has_password(self) -> bool:
        return self.password_encrypted is not None

    @property
    def is_oauth(self) -> bool:
        return self.auth_method == AuthMethod.OAUTH2

    @property
    def is_delegated(self) -> bool:
        return self.is_oauth and self.oauth_grant == OAuthGrant.DELEGATED

    @property
    def basic_auth_retiring(self) -> bool:
        """An Office 365 account still signing in with a password: Microsoft switches that off
        by default at the end of December 2026 (PROVIDERS.md)."""
        return self.provider == "office365" and self.auth_method in (
            AuthMethod.LOGIN,
            AuthMethod.PLAIN,
        )

    @property
    def oauth_provider(self) -> str:
        """Whose identity platform signs this account in: Google for Gmail, else Microsoft."""
        return "google" if self.provider == "gmail" else "microsoft"

    @property
    def health(self) -> AccountHealth:
        if self.paused_at is not None:
            return AccountHealth.PAUSED
        if self.is_oauth:
            if self.is_delegated and self.refresh_token_encrypted is None:
                return AccountHealth.WAITING_FOR_SIGN_IN
        elif self.auth_method != AuthMethod.NONE and not self.has_password:
            return AccountHealth.WAITING_FOR_PASSWORD
        if self.last_outcome_ok is None:
            return AccountHealth.UNTESTED
        return AccountHealth.READY if self.last_outcome_ok else AccountHealth.FAILING

    @property
    def can_send(self) -> bool:
        """Mail may be queued for it: not paused and not waiting for a password or sign-in.
        An untested or failing account is tried (its real outcomes then set its status)."""
        return self.health in (AccountHealth.UNTESTED, AccountHealth.READY, AccountHealth.FAILING)

    @property
    def needs_attention(self) -> bool:
        """Paused or failing: what the admin banner lists."""
        return self.health in (AccountHealth.PAUSED, AccountHealth.FAILING)

    @property
    def label(self) -> str:
        if self.archived_at is not None:
            return f"Removed account ({self.from_email})"
        if self.kind == AccountKind.SYSTEM:
            return f"Single account ({self.from_email})"
        owner = self.owner.name if self.owner else "unknown operator"
        return f"{owner} ({self.from_email})"


class Send(db.Model):
    """One compose: a subject and body going to many recipients, one message each."""

    __tablename__ = "sends"
    __table_args__ = (Index("ix_sends_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("email_accounts.id"), index=True)
    subject: Mapped[str] = mapped_column(String(998))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[SendStatus] = mapped_column(_enum(SendStatus, "send_status"))
    recipient_count: Mapped[int] = mapped_column(Integer)
    flag_reason: Mapped[str | None] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(String(254))
    # When a scheduled send falls due (naive UTC); None: it went (or goes) when composed.
    send_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The public address unsubscribe links start with ("https://host/u/"), fixed at compose
    # because the worker has no request to learn the host from; None: no unsubscribe link.
    unsubscribe_base: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(DateTime)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    account: Mapped[EmailAccount] = relationship()
    released_by: Mapped[User | None] = relationship(foreign_keys=[released_by_id])
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="send", order_by="Attachment.id", passive_deletes=True
    )


class Message(db.Model):
    """One recipient of one send: the outbox row a worker claims, sends and marks."""

    __tablename__ = "messages"
    __table_args__ = (
        # What the claimers and the sweep ask: due work for an account.
        Index("ix_messages_account_status_due", "account_id", "status", "due_at"),
        Index("ix_messages_status_due", "status", "due_at"),
        # Progress of one send by state.
        Index("ix_messages_send_status", "send_id", "status"),
        # Rolling-window rebuild and the dashboard: what an account sent since a moment.
        Index("ix_messages_account_sent_at", "account_id", "sent_at"),
        # Keyset pagination of the delivery log, newest first.
        Index("ix_messages_created_id", "created_at", "id"),
        # The dashboard's "failed in the last 24 h". Partial: it holds failed messages only, so
        # compose's bulk insert and the workers' claims do not pay for it. `status` leads so
        # SQLite's planner sees it beats ix_messages_status_due (equality plus a range).
        Index(
            "ix_messages_failed_updated",
            "status",
            "updated_at",
            "account_id",
            sqlite_where=text("status = 'failed'"),
            postgresql_where=text("status = 'failed'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("email_accounts.id"))
    recipient_email: Mapped[str] = mapped_column(String(254))
    recipient_name: Mapped[str] = mapped_column(String(120), default="")
    message_id_header: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus, "message_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str | None] = mapped_column(Text)  # the server's own answer
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The recipient's own values of the CSV columns the message uses as merge fields; None
    # when it uses none (name and email fields come from the columns above).
    merge_values: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # Random and unguessable: the recipient's one-click unsubscribe link (/u/<token>).
    unsubscribe_token: Mapped[str | None] = mapped_column(String(64), unique=True)

    send: Mapped[Send] = relationship()
    account: Mapped[EmailAccount] = relationship()


class AccountDailyStats(db.Model):
    """Per-account, per-day counters kept beside the messages, so dashboards stay flat in cost
    as history grows and survive the retention purge."""

    __tablename__ = "account_daily_stats"
    __table_args__ = (UniqueConstraint("account_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("email_accounts.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)


class AuditEvent(db.Model):
    """Who changed what and when. `details` never holds a secret (see audit.record)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at_id", "at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_email: Mapped[str] = mapped_column(String(254), default="")  # kept if the user goes
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OAuthRegistration(db.Model):
    """The organisation's app registrations with Microsoft Entra and Google Cloud (one row).

    Client ids and the tenant are not secret; the client secrets are Fernet tokens, write-only
    on the page like passwords."""

    __tablename__ = "oauth_registrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    microsoft_tenant: Mapped[str] = mapped_column(String(100), default="")
    microsoft_client_id: Mapped[str] = mapped_column(String(100), default="")
    microsoft_client_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    google_client_id: Mapped[str] = mapped_column(String(200), default="")
    google_client_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Setting(db.Model):
    """Small organisation-wide settings (e.g. the flag threshold), one row per key."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Attachment(db.Model):
    """A file sent with every message of a send, stored once per send (not per recipient).

    Kept in the database rather than on disk: it is written in the same transaction as the
    send, every worker reads it wherever it runs (no shared folder to mount), backups hold it
    with the rest, and it goes with its send (ON DELETE CASCADE) when retention purges it. A
    file uploaded before the send exists (a compose shown again for a preview or a correction)
    is held with no send, for its uploader only, and purged after a day if never sent.
    """

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    send_id: Mapped[int | None] = mapped_column(
        ForeignKey("sends.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    send: Mapped[Send | None] = relationship(back_populates="attachments")


class Suppression(db.Model):
    """The organisation's do-not-email list: an address here is never sent to."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Lower-cased, so a lookup is one equality whatever case a list uses.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    source: Mapped[str] = mapped_column(String(20))  # "admin", "import" or "unsubscribe"
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    created_by: Mapped[User | None] = relationship()
