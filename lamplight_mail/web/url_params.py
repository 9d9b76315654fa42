"""Integers from requests (ids, page numbers, cursors in URLs; ids in form values) kept inside
what the database can hold.

A 20-digit id used to reach the database and come back as a 500 ("integer out of range" on
PostgreSQL, OverflowError on SQLite); past 64 bits nothing can match, so it is a 404."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

INT64_MAX = 2**63 - 1


def fits_int64(value: int) -> bool:
    return -INT64_MAX - 1 <= value <= INT64_MAX


def ids_from(values: Iterable[str]) -> list[int]:
    """The ids among form values, the rest ignored: ASCII digits only (str.isdigit also takes
    "²", which int() refuses) and within 64 bits (PostgreSQL refuses larger)."""
    return [
        int(value)
        for value in values
        if value.isascii() and value.isdigit() and fits_int64(int(value))
    ]


class Int64Converter(IntegerConverter):
    """`<int:...>` with a 64-bit ceiling: a larger number does not match the route (404)."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", INT64_MAX)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Before any blueprint is registered: rules take their converter when they are added."""
    app.url_map.converters["int"] = Int64Converter
