"""Stored SMTP passwords under MultiFernet: encryption at rest and `flask keys rotate`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select

from lamplight_mail import create_app, crypto
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, User
from tests.factories import make_account

KEY_A, KEY_B, KEY_C = (Fernet.generate_key().decode() for _ in range(3))


@pytest.fixture
def fernet_keys() -> list[str]:
    """The app under test starts with key A only."""
    return [KEY_A]


@contextmanager
def app_with_keys(app_config: dict, keys: list[str]) -> Iterator[Flask]:
    """The same database, opened by an app configured with other keys."""
    other = create_app({**app_config, "FERNET_KEYS": keys})
    with other.app_context():
        yield other
        db.session.remove()
        db.engine.dispose()


def tokens(app: Flask) -> dict[int, bytes]:
    with app.app_context():
        rows = db.session.execute(select(EmailAccount.id, EmailAccount.password_encrypted))
        return {account_id: token for account_id, token in rows}


def test_a_password_is_stored_as_a_token_that_only_the_keys_open(app, app_config):
    with app.app_context():
        token = crypto.encrypt("app-password-9f3k2")
        assert b"app-password-9f3k2" not in token
        assert crypto.decrypt(token) == "app-password-9f3k2"
    with app_with_keys(app_config, [KEY_B]), pytest.raises(crypto.SecretUnreadable) as caught:
        crypto.decrypt(token)
    assert "app-password" not in str(caught.value)


def test_rotation_re_encrypts_with_the_new_key_so_the_old_one_can_go(app, app_config, auth):
    owner_id = auth.create_user("olive@charity.example")
    with app.app_context():
        make_account(audited=True, password="system-secret-1")
        make_account(audited=True, owner=db.session.get(User, owner_id), password="olive-secret-2")
    before = tokens(app)

    with app_with_keys(app_config, [KEY_B, KEY_A]) as rotating:
        result = rotating.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 2 stored password(s)" in result.output

    after = tokens(app)
    assert all(after[account_id] != before[account_id] for account_id in before)
    with app_with_keys(app_config, [KEY_B]):  # key A dropped
        passwords = {
            account.from_email: crypto.decrypt(account.password_encrypted)
            for account in db.session.scalars(select(EmailAccount))
        }
    assert sorted(passwords.values()) == ["olive-secret-2", "system-secret-1"]
    with app_with_keys(app_config, [KEY_A]), pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(after[min(after)])


def test_a_rotation_that_meets_an_unreadable_password_changes_nothing(app, app_config, auth):
    owner_id = auth.create_user("olive@charity.example")
    with app.app_context():
        make_account(audited=True, password="system-secret-1")
    with app_with_keys(app_config, [KEY_C]):  # encrypted with a key nobody will configure
        make_account(audited=True, owner=db.session.get(User, owner_id), password="olive-secret-2")
    before = tokens(app)

    with app_with_keys(app_config, [KEY_B, KEY_A]) as rotating:
        result = rotating.test_cli_runner().invoke(args=["keys", "rotate"])

    assert result.exit_code != 0
    assert "nothing was changed" in result.output
    assert "secret" not in result.output
    assert tokens(app) == before
    with app.app_context():
        assert crypto.decrypt(before[min(before)]) == "system-secret-1"
