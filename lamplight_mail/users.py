"""Creating and changing users, shared by the web forms and the command line."""

from __future__ import annotations

import functools
import secrets

from sqlalchemy import func, select, text
from werkzeug.security import check_password_hash, generate_password_hash

from lamplight_mail import audit
from lamplight_mail.extensions import db
from lamplight_mail.models import Role, User
from lamplight_mail.web.forms.validators import normalise_email


class DuplicateEmail(ValueError):
    pass


class LastAdmin(ValueError):
    """Refused: the change would leave nobody able to administer the app."""


# Any fixed number: the key of the PostgreSQL advisory lock that first-run setups queue on.
FIRST_RUN_LOCK_KEY = 7_224_193_301


def lock_for_first_run() -> None:
    """Make first-run setup one at a time, so concurrent posts to /setup create one admin.

    Call before checking whether any user exists, in the transaction that creates the admin;
    the lock lasts until it commits or rolls back. On PostgreSQL that is an advisory lock
    (the next setup then sees the committed admin and stops). A SQLite form post already
    holds the database's write lock from its first statement (begin_form_writes_immediately)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIRST_RUN_LOCK_KEY})


def any_user_exists() -> bool:
    return db.session.scalar(select(func.count()).select_from(User)) > 0


class CannotDeactivateSelf(ValueError):
    """An admin may not lock themselves out."""


def _admin_count() -> int:
    """Admins who can still log in."""
    return db.session.scalar(
        select(func.count()).select_from(User).where(User.role == Role.ADMIN, User.is_active_user)
    )


@functools.cache
def _dummy_password_hash() -> str:
    # Same method and cost as real hashes, of a password nobody knows.
    return generate_password_hash(secrets.token_urlsafe(32))


def authenticate(email: str, password: str) -> User | None:
    """The user with this email and password (active or not), else None. An unknown email
    costs one password hash too, so the time taken does not tell which addresses have users."""
    user = find_by_email(email)
    if user is None:
        check_password_hash(_dummy_password_hash(), password)
        return None
    return user if user.check_password(password) else None


def find_by_email(email: str) -> User | None:
    address = normalise_email(email)
    if "\x00" in address:  # no stored address holds one, and PostgreSQL cannot compare it
        return None
    return db.session.scalar(select(User).where(User.email == address))


def create_user(
    email: str, name: str, role: Role, password: str, actor: User | None = None
) -> User:
    """Add a user to the session (the caller commits). Emails are unique, case-insensitively."""
    if find_by_email(email) is not None:
        raise DuplicateEmail(
            f"A user with the email address {normalise_email(email)} already exists."
        )
    user = User(email=normalise_email(email), name=name.strip(), role=Role(role))
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    audit.record(
        "user.created",
        "user",
        user.id,
        f"Created {user.role.value} {user.email}",
        {"email": user.email, "name": user.name, "role": user.role.value},
        actor=actor,
    )
    return user


def update_user(user: User, email: str, name: str, role: Role, password: str | None) -> None:
    """Apply a user form's values; a blank password keeps the current one."""
    email = normalise_email(email)
    other = find_by_email(email)
    if other is not None and other.id != user.id:
        raise DuplicateEmail(f"A user with the email address {email} already exists.")
    if user.role == Role.ADMIN and Role(role) != Role.ADMIN and _admin_count() == 1:
        raise LastAdmin("This is the only admin: make someone else an admin first.")
    changes = {
        field: new
        for field, old, new in (
            ("email", user.email, email),
            ("name", user.name, name.strip()),
            ("role", user.role.value, Role(role).value),
        )
        if old != new
    }
    user.email, user.name, user.role = email, name.strip(), Role(role)
    if password:
        user.set_password(password)
        user.end_sessions()  # whoever knew the old password is logged out everywhere
        changes["password"] = True
    if changes:
        audit.record("user.updated", "user", user.id, f"Changed user {user.email}", changes)


def deactivate_user(user: User, actor: User) -> None:
    """The user can no longer log in and every session of theirs ends now (the caller
    commits). Their history (sends, audit entries) stays."""
    if user.id == actor.id:
        raise CannotDeactivateSelf("You cannot deactivate yourself: ask another admin.")
    if user.is_admin and user.is_active_user and _admin_count() == 1:
        raise LastAdmin("This is the only admin: make someone else an admin first.")
    if not user.is_active_user:
        return
    user.is_active_user = False
    user.end_sessions()
    audit.record("user.deactivated", "user", user.id, f"Deactivated {user.email}", actor=actor)


def reactivate_user(user: User, actor: User) -> None:
    """The user may log in again, with their existing password (the caller commits)."""
    if user.is_active_user:
        return
    user.is_active_user = True
    audit.record("user.reactivated", "user", user.id, f"Reactivated {user.email}", actor=actor)
