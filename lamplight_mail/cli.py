"""`flask --app app ...` commands: users and key rotation."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from lamplight_mail import audit, crypto, users
from lamplight_mail.extensions import db
from lamplight_mail.forms.auth import MIN_PASSWORD_LENGTH
from lamplight_mail.models import EmailAccount, Role

users_cli = AppGroup("users", help="Manage the people who use Lamplight Mail.")
keys_cli = AppGroup("keys", help="Manage the keys that encrypt stored SMTP passwords.")


@users_cli.command("create")
@click.argument("email")
@click.option("--name", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_user_command(email: str, name: str, role: str, password: str) -> None:
    """Create a user (prompts for the password when --password is not given)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    try:
        user = users.create_user(email, name, Role(role), password)
    except users.DuplicateEmail as error:
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"Created {user.role.value} {user.email}.")


@keys_cli.command("rotate")
def rotate_keys_command() -> None:
    """Re-encrypt every stored SMTP password with the newest (first) key of LAMPLIGHT_MAIL_KEYS."""
    accounts = db.session.scalars(
        select(EmailAccount).where(EmailAccount.password_encrypted.is_not(None))
    ).all()
    try:
        for account in accounts:
            account.password_encrypted = crypto.rotate(account.password_encrypted)
    except crypto.SecretUnreadable as error:
        db.session.rollback()
        raise click.ClickException(
            f"{error} (account {account.id}); nothing was changed. Keep the old key in "
            "LAMPLIGHT_MAIL_KEYS, after the new one, until rotation has succeeded."
        ) from None
    audit.record("keys.rotated", "system", None, f"Re-encrypted {len(accounts)} stored password(s)")
    db.session.commit()
    click.echo(f"Re-encrypted {len(accounts)} stored password(s) with the newest key.")


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)
