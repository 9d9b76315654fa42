"""The few statements run for every message sent, compiled once and run on the database
driver's own cursor, inside the caller's SQLAlchemy transaction.

A mark costs the database a few microseconds; through SQLAlchemy's execution layer (cache
lookup, parameter processing, events, result set-up) it cost the worker about ten times that,
which at hundreds of messages a second was a fifth of the worker's CPU. Only the statement's
execution moves below SQLAlchemy: it is still built in Core (so the SQL and the column types
stay the models'), the transaction is still the Connection's, and a driver error comes out as
SQLAlchemy's DBAPIError, the connection invalidated when the driver says it is gone, exactly
as Connection.execute would raise it (the reconnecting writers in claims.py rely on that).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable


class DriverStatement:
    """A Core statement compiled for one dialect: its SQL and how to turn named values into the
    driver's parameters (the column types' own conversions applied)."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.escaped_bind_names:
            raise ValueError("parameter names the driver cannot take as they are")
        self.sql = compiled.string
        # Values fixed when the statement was built (e.g. status=SENT); the rest come per call.
        self._fixed = {
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        }
        self._conversions: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            conversion = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if conversion is not None:
                self._conversions[name] = conversion
        self._order = compiled.positiontup  # None where the driver takes named parameters

    def parameters(self, values: dict[str, Any]) -> tuple | dict[str, Any]:
        converted = {**self._fixed, **values}
        for name, conversion in self._conversions.items():
            converted[name] = conversion(converted[name])
        if self._order is None:
            return converted
        return tuple(converted[name] for name in self._order)

    def execute(self, connection: Connection, values: dict[str, Any]) -> int:
        """Run it in `connection`'s transaction; how many rows it changed."""
        driver_connection = connection.connection.dbapi_connection
        cursor = driver_connection.cursor()
        try:
            cursor.execute(self.sql, self.parameters(values))
            return cursor.rowcount
        except connection.dialect.loaded_dbapi.Error as error:
            gone = connection.dialect.is_disconnect(error, driver_connection, cursor)
            if gone:
                connection.invalidate()
            raise DBAPIError.instance(
                self.sql,
                None,  # never the values: an answer or an address has no place in an error
                error,
                connection.dialect.loaded_dbapi.Error,
                connection_invalidated=gone,
                dialect=connection.dialect,
            ) from error
        finally:
            cursor.close()


_compiled: dict[tuple[Executable, str, str], DriverStatement] = {}
_compiling = threading.Lock()


def execute(connection: Connection, statement: Executable, values: dict[str, Any]) -> int:
    """Run `statement` (one built once: each is compiled once per dialect and kept) with
    `values` on `connection`'s driver cursor; how many rows it changed."""
    dialect = connection.dialect
    key = (statement, dialect.name, dialect.driver)
    compiled = _compiled.get(key)
    if compiled is None:
        with _compiling:
            compiled = _compiled.setdefault(key, DriverStatement(statement, dialect))
    return compiled.execute(connection, values)
