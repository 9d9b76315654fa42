"""SMTP secrets at rest: MultiFernet over LAMPLIGHT_MAIL_KEYS, newest key first."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, current_app


class SecretUnreadable(Exception):
    """A stored secret no configured key can open (a key was dropped too early)."""


def _fernet(app: Flask | None = None) -> MultiFernet:
    app = app or current_app
    fernet = app.extensions.get("lamplight_fernet")
    if fernet is None:
        keys = app.config["FERNET_KEYS"]
        if not keys:
            raise RuntimeError("no encryption key configured (LAMPLIGHT_MAIL_KEYS)")
        fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        app.extensions["lamplight_fernet"] = fernet
    return fernet


def encrypt(plaintext: str, app: Flask | None = None) -> bytes:
    return _fernet(app).encrypt(plaintext.encode("utf-8"))


def decrypt(token: bytes, app: Flask | None = None) -> str:
    try:
        return _fernet(app).decrypt(token).decode("utf-8")
    except InvalidToken:
        # Deliberately says nothing of the token or the keys.
        raise SecretUnreadable(
            "a stored password cannot be decrypted with the configured keys"
        ) from None


def rotate(token: bytes, app: Flask | None = None) -> bytes:
    """Re-encrypt `token` under the newest key."""
    try:
        return _fernet(app).rotate(token)
    except InvalidToken:
        raise SecretUnreadable(
            "a stored password cannot be decrypted with the configured keys"
        ) from None
