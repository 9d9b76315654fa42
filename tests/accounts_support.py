"""Helpers for the email account tests: form posts as a browser sends them, accounts made
through the services, and everything the database holds as text."""

from __future__ import annotations

import re

from flask import Flask
from sqlalchemy import select

from lamplight_mail.accounts import editing
from lamplight_mail.accounts.editing import AccountValues, PasswordAction, PasswordChange
from lamplight_mail.extensions import db
from lamplight_mail.models import AccountKind, AuthMethod, EmailAccount, Security, User
from tests.conftest import SMTP_PASSWORD, SMTP_USER


def form_data(**overrides: str) -> dict[str, str]:
    """An Office 365 account form as an admin fills it in (limits left to the preset)."""
    data = {
        "provider": "office365",
        "host": "",
        "port": "",
        "auth_method": "login",
        "security": "tls",
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "from_email": SMTP_USER,
        "from_name": "Riverside Food Bank",
        "daily_limit": "",
        "per_minute_limit": "",
        "max_recipients": "",
        "connection_cap": "",
        "reserve_percent": "0",
    }
    data.update(overrides)
    return data


def server_form_data(server, **overrides: str) -> dict[str, str]:
    """The form pointed at a test SMTP server (STARTTLS unless overridden)."""
    return form_data(host=server.host, port=str(server.port), **overrides)


def make_account(
    kind: AccountKind = AccountKind.OPERATOR,
    owner: User | None = None,
    password: str | None = SMTP_PASSWORD,
    server=None,
    default_for_operators: bool = False,
    **overrides,
) -> EmailAccount:
    """An account created through the services (call inside an app context; commits)."""
    values = dict(
        provider="office365",
        host=server.host if server else "smtp.office365.com",
        port=server.port if server else 587,
        auth_method=AuthMethod.LOGIN,
        security=Security.TLS,
        username=SMTP_USER,
        from_email=owner.email if owner else SMTP_USER,
        from_name="",
        daily_limit=10_000,
        per_minute_limit=30,
        max_recipients=500,
        connection_cap=3,
        reserve_percent=0,
    )
    values.update(overrides)
    change = (
        PasswordChange(PasswordAction.REPLACE, password)
        if password
        else PasswordChange(PasswordAction.LEAVE_TO_OPERATOR)
    )
    account = editing.save_account(
        None,
        kind,
        AccountValues(**values),
        change,
        owner=owner,
        default_for_operators=default_for_operators,
    )
    db.session.commit()
    return account


def user(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))


def stored_text(app: Flask) -> str:
    """Every row of every table, as text: what anyone reading the database would see."""
    with app.app_context():
        rows = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)):
                rows.append(repr(tuple(row)))
        return "\n".join(rows)


def password_input(page: str) -> str:
    """The password <input> element as rendered."""
    match = re.search(r'<input[^>]*name="password"[^>]*>', page)
    assert match, "no password field on the page"
    return match.group(0)


def input_value(page: str, name: str) -> str | None:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*>', page)
    assert match, f"no {name} field on the page"
    value = re.search(r'value="([^"]*)"', match.group(0))
    return value.group(1) if value else None


def selected_option(page: str, name: str) -> str:
    select_element = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert select_element, f"no {name} select on the page"
    option = re.search(r'<option selected value="([^"]*)"', select_element.group(1))
    assert option, f"nothing selected in {name}"
    return option.group(1)
