"""Fault injection on real processes: worker processes killed or stopped, Redis stopped and
started empty, PostgreSQL backends terminated, SMTP servers that stall, drop or refuse.

Each test adds a row to the table printed at the end of the run: the faults it injected, the
messages involved, and how many were lost, sent twice or sent over the account's limit.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lamplight_mail.dev import embedded_redis


@dataclass(frozen=True)
class Row:
    fault: str
    injected: int
    messages: int
    lost: int
    duplicated: int
    over_limit: int


_ROWS: list[Row] = []


class Tally:
    def add(
        self,
        fault: str,
        *,
        injected: int,
        messages: int,
        lost: int,
        duplicated: int,
        over_limit: int = 0,
    ) -> None:
        _ROWS.append(Row(fault, injected, messages, lost, duplicated, over_limit))


@pytest.fixture(scope="session")
def tally() -> Tally:
    return Tally()


def pytest_terminal_summary(terminalreporter) -> None:
    if not _ROWS:
        return
    headers = ("fault", "injected", "messages", "lost", "duplicated", "over-limit")
    rows = [
        (r.fault, *(str(n) for n in (r.injected, r.messages, r.lost, r.duplicated, r.over_limit)))
        for r in _ROWS
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    terminalreporter.section("faults injected")
    for row in [headers, *rows]:
        numbers = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in numbers]
        terminalreporter.write_line("  ".join(cells))


class RedisServer:
    """An embedded Redis of the test's own, which the test may stop and start again (empty)."""

    def __init__(self) -> None:
        # A short path: unix socket paths are limited to about 100 characters.
        self.folder = tempfile.mkdtemp(prefix="lm-fault-redis-")
        self.url = embedded_redis.ensure_running(self.folder, persist=False)

    def stop(self) -> None:
        embedded_redis.stop(self.folder)

    def start(self) -> None:
        embedded_redis.ensure_running(self.folder, persist=False)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """Every fault test has a Redis of its own: stopping it disturbs no other test."""
    return redis_server.url
