"""`flask --app app ...` commands: users, key rotation and the delivery log's history."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from lamplight_mail import audit, crypto, users
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, Role
from lamplight_mail.ops import retention
from lamplight_mail.web.forms.auth import MIN_PASSWORD_LENGTH

users_cli = AppGroup("users", help="Manage the people who use Lamplight Mail.")
keys_cli = AppGroup("keys", help="Manage the keys that encrypt stored SMTP passwords.")
messages_cli = AppGroup("messages", help="Manage how long the delivery log keeps messages.")


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


@messages_cli.command("purge")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Keep this many days instead of the retention setting (90 unless changed).",
)
def purge_messages_command(days: int | None) -> None:
    """Delete finished messages older than the retention period; daily figures are kept."""
    days = days or retention.retention_days()
    result = retention.purge(days)
    click.echo(
        f"Deleted {result.messages} messages and {result.sends} sends created before "
        f"{result.cutoff:%d %b %Y %H:%M} UTC. The dashboard's daily figures are kept."
    )


@messages_cli.command("retention")
@click.argument("days", type=click.IntRange(min=1), required=False)
def retention_command(days: int | None) -> None:
    """Show how many days messages are kept, or set it to DAYS."""
    if days is not None:
        retention.set_retention_days(days)
        db.session.commit()
    click.echo(f"Messages are kept for {retention.retention_days()} days.")


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(messages_cli)
