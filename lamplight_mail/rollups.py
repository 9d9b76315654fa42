"""Per-account, per-day delivery counters (AccountDailyStats), kept as messages are marked.

The dashboard reads these instead of counting messages, so its cost stays flat as the log grows
and history survives the retention purge.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite

from lamplight_mail.extensions import db
from lamplight_mail.models import AccountDailyStats

_DIALECT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def record_outcome(account_id: int, when: datetime, sent: int = 0, failed: int = 0) -> None:
    """Add `sent` and `failed` to the account's counters for the day of `when` (UTC).

    Runs in the caller's transaction, so the counters move with the message marks they count.
    A single INSERT ... ON CONFLICT DO UPDATE: two workers creating the day's row at the same
    moment both land, neither fails nor overwrites the other.
    """
    if not sent and not failed:
        return
    insert = _DIALECT_INSERTS[db.session.get_bind().dialect.name]
    table = AccountDailyStats.__table__
    statement = insert(table).values(
        account_id=account_id, day=when.date(), sent=sent, failed=failed
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.account_id, table.c.day],
        set_={
            "sent": table.c.sent + statement.excluded.sent,
            "failed": table.c.failed + statement.excluded.failed,
        },
    )
    db.session.execute(statement)
