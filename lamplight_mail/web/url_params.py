"""Integers from URLs (ids, page numbers, cursors) kept inside what the database can hold.

A 20-digit id used to reach the database and come back as a 500 ("integer out of range" on
PostgreSQL, OverflowError on SQLite); past 64 bits nothing can match, so it is a 404."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

INT64_MAX = 2**63 - 1


def fits_int64(value: int) -> bool:
    return -INT64_MAX - 1 <= value <= INT64_MAX


class Int64Converter(IntegerConverter):
    """`<int:...>` with a 64-bit ceiling: a larger number does not match the route (404)."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", INT64_MAX)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Before any blueprint is registered: rules take their converter when they are added."""
    app.url_map.converters["int"] = Int64Converter
