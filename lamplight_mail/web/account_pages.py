"""Which page shows an email account, for the views that send people back to it."""

from __future__ import annotations

from flask import url_for

from lamplight_mail.models import AccountKind, EmailAccount


def account_page(account: EmailAccount) -> str:
    """The admin's page for the account: the single account's, or the operator account's."""
    if account.kind == AccountKind.SYSTEM:
        return url_for("accounts.system")
    return url_for("accounts.edit_operator", account_id=account.id)
