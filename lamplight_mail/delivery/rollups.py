"""Per-account, per-day delivery counters (AccountDailyStats), kept as messages are marked.

The dashboard reads these instead of counting messages, so its cost stays flat as the log grows
and history survives the retention purge.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import Connection, Insert, bindparam
from sqlalchemy.dialects import postgresql, sqlite

from lamplight_mail import org_time
from lamplight_mail.delivery import driver_sql
from lamplight_mail.extensions import db
from lamplight_mail.models import AccountDailyStats

_DIALECT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@cache
def _upsert(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT DO UPDATE, built once per dialect (it runs for every message)."""
    table = AccountDailyStats.__table__
    statement = _DIALECT_INSERTS[dialect](table).values(
        account_id=bindparam("account_id"),
        day=bindparam("day"),
        sent=bindparam("sent"),
        failed=bindparam("failed"),
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.account_id, table.c.day],
        set_={
            "sent": table.c.sent + statement.excluded.sent,
            "failed": table.c.failed + statement.excluded.failed,
        },
    )


def record_outcome(
    account_id: int,
    when: datetime,
    sent: int = 0,
    failed: int = 0,
    *,
    connection: Connection | None = None,
) -> None:
    """Add `sent` and `failed` to the account's counters for the day of `when` (UTC).

    Runs in the caller's transaction (the app session's, or `connection`'s), so the counters
    move with the message marks they count. A single INSERT ... ON CONFLICT DO UPDATE: two
    workers creating the day's row at the same moment both land, neither fails nor overwrites
    the other.
    """
    if not sent and not failed:
        return
    connection = connection if connection is not None else db.session.connection()
    driver_sql.execute(
        connection,
        _upsert(connection.dialect.name),
        {"account_id": account_id, "day": org_time.day_of(when), "sent": sent, "failed": failed},
    )
