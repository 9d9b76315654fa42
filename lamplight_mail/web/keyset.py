"""Keyset pagination, newest first, over a (timestamp, id) pair with an index on both.

Offsets get slower the further one pages (the database walks every skipped row); a keyset page
starts from the last row seen, so page 500 costs what page 1 costs. Ties on the timestamp are
broken by id, so no row is shown twice or skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_

from lamplight_mail.extensions import db


@dataclass(frozen=True)
class Cursor:
    """A position in the list: the (timestamp, id) of a row, as a URL-safe token."""

    at: datetime
    id: int

    @property
    def token(self) -> str:
        return f"{self.at.isoformat()}_{self.id}"

    @classmethod
    def parse(cls, token: str | None) -> Cursor | None:
        """The cursor in `token`, or None for a missing or mangled one (the first page)."""
        if not token:
            return None
        at, _, row_id = token.rpartition("_")
        try:
            return cls(datetime.fromisoformat(at), int(row_id))
        except ValueError:
            return None


@dataclass(frozen=True)
class KeysetPage:
    rows: list[Any]
    newer: Cursor | None  # pass as `after` for the page of newer rows
    older: Cursor | None  # pass as `before` for the page of older rows


@dataclass(frozen=True)
class Keyset:
    """The two ordering columns of a query and how to read them back from a result row."""

    at: Any  # an ORM column, e.g. Message.created_at
    id: Any
    cursor_of: Callable[[Any], Cursor]

    def older_than(self, cursor: Cursor) -> ColumnElement[bool]:
        # The leading `at <=` is a plain range the index can seek to; the OR breaks ties.
        return and_(
            self.at <= cursor.at,
            or_(self.at < cursor.at, self.id < cursor.id),
        )

    def newer_than(self, cursor: Cursor) -> ColumnElement[bool]:
        return and_(
            self.at >= cursor.at,
            or_(self.at > cursor.at, self.id > cursor.id),
        )

    def newest_first(self, query: Select) -> Select:
        return query.order_by(self.at.desc(), self.id.desc())

    def page(
        self,
        query: Select,
        *,
        before: Cursor | None = None,
        after: Cursor | None = None,
        per_page: int = 50,
    ) -> KeysetPage:
        """One page of `query` (unordered, filtered) newest first, from the given cursor."""
        if after is not None:
            rows = list(
                db.session.execute(
                    query.where(self.newer_than(after))
                    .order_by(self.at.asc(), self.id.asc())
                    .limit(per_page + 1)
                )
            )
            if len(rows) > per_page:
                rows = rows[:per_page][::-1]
                return KeysetPage(rows, self.cursor_of(rows[0]), self.cursor_of(rows[-1]))
            # Fewer than a page is newer: show the newest page, whole, instead.
            before = None
        query = self.newest_first(query)
        if before is not None:
            query = query.where(self.older_than(before))
        rows = list(db.session.execute(query.limit(per_page + 1)))
        older = self.cursor_of(rows[per_page - 1]) if len(rows) > per_page else None
        rows = rows[:per_page]
        newer = self.cursor_of(rows[0]) if before is not None and rows else None
        return KeysetPage(rows, newer, older)

    def batches(self, query: Select, size: int = 1000) -> Iterator[Any]:
        """Every row of `query` newest first, fetched a batch at a time (for exports)."""
        cursor: Cursor | None = None
        while True:
            batch_query = self.newest_first(query)
            if cursor is not None:
                batch_query = batch_query.where(self.older_than(cursor))
            rows = list(db.session.execute(batch_query.limit(size)))
            yield from rows
            if len(rows) < size:
                return
            cursor = self.cursor_of(rows[-1])
