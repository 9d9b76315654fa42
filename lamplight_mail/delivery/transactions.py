"""Write transactions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lamplight_mail.extensions import db


@contextmanager
def write_transaction() -> Iterator[None]:
    """Run the block in a fresh write transaction of the app session, committed on leaving.

    On SQLite the transaction starts with BEGIN IMMEDIATE: the write lock is taken up front, so
    two claimers never read the same rows (PostgreSQL claims use FOR UPDATE SKIP LOCKED), and a
    busy database is waited for. A plain transaction that reads and then writes fails at once
    with "database is locked" whenever another process committed in between, because SQLite
    cannot turn an outdated read snapshot into a write; that is why a read the caller left open
    is ended first.
    """
    session = db.session()
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("commit or roll back pending changes before a write transaction")
        session.commit()  # ends a read only: nothing is pending
    # The option takes effect as the transaction begins, which is now.
    session.connection(execution_options={"sqlite_immediate": True})
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise
