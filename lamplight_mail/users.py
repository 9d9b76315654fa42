"""Creating and changing users, shared by the web forms and the command line."""

from __future__ import annotations

from sqlalchemy import func, select

from lamplight_mail import audit
from lamplight_mail.extensions import db
from lamplight_mail.models import Role, User
from lamplight_mail.web.forms.validators import normalise_email


class DuplicateEmail(ValueError):
    pass


class LastAdmin(ValueError):
    """Refused: the change would leave nobody able to administer the app."""


def any_user_exists() -> bool:
    return db.session.scalar(select(func.count()).select_from(User)) > 0


def _admin_count() -> int:
    return db.session.scalar(select(func.count()).select_from(User).where(User.role == Role.ADMIN))


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalise_email(email)))


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
        changes["password"] = True
    if changes:
        audit.record("user.updated", "user", user.id, f"Changed user {user.email}", changes)
