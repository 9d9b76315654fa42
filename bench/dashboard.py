"""Does the dashboard (and the delivery log) stay as fast as the message history grows?

`python -m bench.dashboard` builds one database with 200 accounts and the same recent activity
(the rolling window, open messages, 90 days of rollups), times GET /dashboard and the first page
of /log with 10,000 logged messages, adds older history up to 1,000,000 messages, and times them
again; it prints each median and the ratio (target: <= 1.5). A /log page deep in the history
(a keyset cursor near the oldest message) is timed too, against the first page. The pages take
turns, round after round, so a change in the machine's load falls on all of them alike.

The dashboard counts each account's limit usage from the limiter's windows in Redis. It is timed
twice more, each against that normal path in the same run, where the figures come from the sent
log instead: with Redis emptied before every request (as after a restart without its data: each
account's windows are rebuilt from the sent log, delivery/limits.py) and with Redis not
answering (the dashboard counts from the sent log itself, reporting/usage.py).

SQLite in a temporary folder by default; set LAMPLIGHT_BENCH_DATABASE_URL to an empty
PostgreSQL database to measure there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, text

from lamplight_mail import create_app
from lamplight_mail.dev import embedded_redis
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import (
    AccountDailyStats,
    AuthMethod,
    EmailAccount,
    Message,
    MessageStatus,
    Role,
    Send,
    SendStatus,
    User,
    utcnow,
)
from lamplight_mail.web.keyset import Cursor
from tests.factories import make_account, make_user, message_row

ACCOUNTS = 200
SMALL, LARGE = 10_000, 1_000_000
HISTORY_DAYS = 90
CHUNK = 20_000
ADMIN_EMAIL, ADMIN_PASSWORD = "bench-admin@charity.example", "bench password 1"
TARGET_RATIO = 1.5
ROUNDS = 11  # timed requests of each page, taking turns
# Per account, in the last day: sent in the window, waiting, deferred, failed.
RECENT = {MessageStatus.SENT: 20, MessageStatus.QUEUED: 3, MessageStatus.DEFERRED: 2}
RECENT_FAILED = 1


class Generator:
    """Bulk inserts straight into the tables (Core executemany, no ORM objects)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.random = random.Random(5)
        self.account_ids: list[int] = []
        self.history_sends: dict[int, list[tuple[int, datetime]]] = {}

    def people_and_accounts(self) -> None:
        make_user(ADMIN_EMAIL, name="Bench Admin", role=Role.ADMIN, password=ADMIN_PASSWORD)
        # Operators in one insert: hashing 199 real passwords would dominate the set-up.
        db.session.execute(
            insert(User),
            [
                {
                    "email": f"operator{n}@charity.example",
                    "name": f"Operator {n:03d}",
                    "role": Role.OPERATOR,
                    "password_hash": "not-a-real-hash",
                    "is_active_user": True,
                    "created_at": self.now,
                }
                for n in range(1, ACCOUNTS)
            ],
        )
        operators = db.session.scalars(
            select(User).where(User.role == Role.OPERATOR).order_by(User.id)
        ).all()
        for n, owner in enumerate([None, *operators]):
            make_account(
                owner=owner,
                from_email=f"mailbox{n}@charity.example",
                auth_method=AuthMethod.NONE,
                password=None,
                daily_limit=10_000,
                per_minute_limit=30,
            )
        self.account_ids = list(db.session.scalars(select(EmailAccount.id)))

    def sends_and_rollups(self) -> None:
        """One send per account per day of history, and its rollup row (90 days of both)."""
        first_user = db.session.scalar(select(func.min(User.id)))
        rows, rollups = [], []
        for account_id in self.account_ids:
            for day in range(HISTORY_DAYS + 1):
                created = self.now - timedelta(days=day, hours=1)
                rows.append(
                    {
                        "user_id": first_user,
                        "account_id": account_id,
                        "subject": f"Newsletter {day}",
                        "body_text": "Hello",
                        "status": SendStatus.SENDING if day == 0 else SendStatus.DONE,
                        "recipient_count": 0,
                        "created_at": created,
                    }
                )
                rollups.append(
                    {"account_id": account_id, "day": created.date(), "sent": 40, "failed": 1}
                )
        db.session.execute(insert(Send), rows)
        db.session.execute(insert(AccountDailyStats), rollups)
        newest_first = select(Send.id, Send.account_id, Send.created_at).order_by(
            Send.created_at.desc()
        )
        for send_id, account_id, created in db.session.execute(newest_first):
            self.history_sends.setdefault(account_id, []).append((send_id, created))
        db.session.commit()

    def recent(self) -> int:
        """The last day's activity, identical in both measurements."""
        rows = []
        for account_id in self.account_ids:
            send_id, _ = self.history_sends[account_id][0]  # today's send
            for status, count in RECENT.items():
                for _ in range(count):
                    at = self.now - timedelta(seconds=self.random.uniform(0, 23 * 3600))
                    due = at if status != MessageStatus.DEFERRED else self.now + timedelta(hours=1)
                    sent = at if status == MessageStatus.SENT else None
                    rows.append(self._message(send_id, account_id, status, at, due, sent))
            for _ in range(RECENT_FAILED):
                at = self.now - timedelta(hours=2)
                rows.append(self._message(send_id, account_id, MessageStatus.FAILED, at, at, None))
        self._insert(rows)
        return len(rows)

    def history(self, count: int) -> None:
        """Finished messages spread over the days before the window (97 % sent, 3 % failed)."""
        rows = []
        for _ in range(count):
            account_id = self.random.choice(self.account_ids)
            send_id, created = self.random.choice(self.history_sends[account_id][1:])  # not today
            at = created + timedelta(seconds=self.random.uniform(0, 3000))
            if self.random.random() < 0.97:
                rows.append(self._message(send_id, account_id, MessageStatus.SENT, at, at, at))
            else:
                rows.append(self._message(send_id, account_id, MessageStatus.FAILED, at, at, None))
            if len(rows) == CHUNK:
                self._insert(rows)
                rows = []
        self._insert(rows)

    def _message(self, send_id, account_id, status, created, due, sent) -> dict:
        return message_row(
            send_id,
            account_id,
            status,
            recipient=f"person{self.random.randrange(10**7)}@example.org",
            created_at=created,
            due_at=due,
            sent_at=sent,
            attempts=1 if status in (MessageStatus.SENT, MessageStatus.FAILED) else 0,
            last_code=250 if sent else None,
            last_response="2.0.0 OK" if sent else None,
        )

    def _insert(self, rows: list[dict]) -> None:
        if rows:
            db.session.execute(insert(Message), rows)
            db.session.commit()


@dataclass(frozen=True)
class Probe:
    """One page to time: `prepare` runs (untimed) before each request, the request is made
    `within` a context, and `shows` is text the page must hold (proof the path meant was taken)."""

    url: str
    prepare: Callable[[], object] = lambda: None
    within: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    shows: str | None = None

    def seconds(self, client: FlaskClient) -> float:
        self.prepare()
        with self.within():
            started = time.perf_counter()
            response = client.get(self.url)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200, self.url
        page = response.get_data(as_text=True)
        assert self.shows is None or self.shows in page, (self.url, self.shows)
        return elapsed


def _lose_windows(app: Flask) -> None:
    """Empty Redis, as a restart without its data does: every limiter window is gone."""
    with app.app_context():
        get_redis().flushdb()


def _windows_built(app: Flask) -> int:
    with app.app_context():
        return sum(1 for _ in get_redis().scan_iter("lm:limits:*:built"))


@contextlib.contextmanager
def _redis_down(app: Flask) -> Iterator[None]:
    """The app's Redis does not answer (a socket nobody listens on), its warnings silenced."""
    url, client = app.config["REDIS_URL"], app.extensions["lamplight_redis"]
    level = app.logger.level
    nowhere = Path(tempfile.gettempdir()) / f"lm-bench-{uuid.uuid4().hex}.sock"
    app.config["REDIS_URL"] = f"unix://{nowhere}"
    app.extensions["lamplight_redis"] = None
    app.logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        app.config["REDIS_URL"], app.extensions["lamplight_redis"] = url, client
        app.logger.setLevel(level)


def _deep_log_url() -> str:
    """A /log page starting near the oldest message, as if reached by paging a long way."""
    oldest = db.session.execute(
        select(Message.created_at, Message.id)
        .order_by(Message.created_at, Message.id)
        .offset(100)
        .limit(1)
    ).one()
    return f"/log?before={Cursor(oldest.created_at, oldest.id).token}"


def _measure(app: Flask, client: FlaskClient) -> dict[str, float]:
    """Median ms of each probe. The probes take turns, round after round, so a change in the
    machine's load meanwhile falls on all of them alike (the ratios are the figures)."""
    with app.app_context():
        # Fresh planner statistics, as PostgreSQL's autovacuum (or a nightly ANALYZE) keeps them.
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        deep = _deep_log_url()
    probes = {
        "dashboard": Probe("/dashboard"),
        "dashboard, windows lost": Probe("/dashboard", prepare=lambda: _lose_windows(app)),
        "dashboard, Redis down": Probe(
            "/dashboard", within=lambda: _redis_down(app), shows="Counted from the delivery log"
        ),
        "log, first page": Probe("/log"),
        "log, deep page": Probe(deep),
    }
    timings: dict[str, list[float]] = {name: [] for name in probes}
    for round_number in range(ROUNDS + 1):
        for name, probe in probes.items():
            seconds = probe.seconds(client)
            if round_number:  # the first round warms caches and templates
                timings[name].append(seconds)
        if round_number == 1:
            built = _windows_built(app)
            assert built == ACCOUNTS, f"{built} of {ACCOUNTS} accounts' windows rebuilt"
    return {name: statistics.median(times) * 1000 for name, times in timings.items()}


def _app(folder: Path) -> Flask:
    url = os.environ.get("LAMPLIGHT_BENCH_DATABASE_URL") or f"sqlite:///{folder / 'bench.sqlite'}"
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": embedded_redis.ensure_running(folder / "redis", persist=False),
            "FERNET_KEYS": [Fernet.generate_key().decode()],
            "SECRET_KEY": uuid.uuid4().hex,
            "WTF_CSRF_ENABLED": False,
        }
    )


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="lm-bench-"))
    try:
        app = _app(folder)
        with app.app_context():
            db.create_all()
            generator = Generator(utcnow())
            started = time.perf_counter()
            generator.people_and_accounts()
            generator.sends_and_rollups()
            recent = generator.recent()
            generator.history(SMALL - recent)
        client = app.test_client()
        login = client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert login.status_code == 302, "bench admin could not log in"
        small = _measure(app, client)

        with app.app_context():
            generator.history(LARGE - SMALL)
            built = time.perf_counter() - started
        large = _measure(app, client)
        with app.app_context():
            db.drop_all()
            db.engine.dispose()
    finally:
        embedded_redis.stop(folder / "redis")
        shutil.rmtree(folder, ignore_errors=True)

    print(
        f"dashboard: {ACCOUNTS} accounts, {SMALL:,} vs {LARGE:,} logged messages "
        f"(same last 24 h; {built:.0f} s to generate), median ms per request"
    )
    print(f"  {'':<24}{SMALL:>12,}{LARGE:>12,}   ratio")
    for name in small:
        ratio = large[name] / small[name]
        verdict = "ok" if ratio <= TARGET_RATIO else f"over the {TARGET_RATIO} target"
        print(f"  {name:<24}{small[name]:>12.1f}{large[name]:>12.1f}   {ratio:.2f} {verdict}")
    print(
        f"  log, deep vs first page at {LARGE:,}: "
        f"{large['log, deep page'] / large['log, first page']:.2f}"
    )
    print("  usage from the sent log vs from Redis's windows (the dashboard), same run:")
    for name in ("dashboard, windows lost", "dashboard, Redis down"):
        print(
            f"  {name:<24}{small[name] / small['dashboard']:>6.2f} at {SMALL:,}"
            f"{large[name] / large['dashboard']:>7.2f} at {LARGE:,}"
        )


if __name__ == "__main__":
    main()
