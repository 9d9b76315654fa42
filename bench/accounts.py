"""Many accounts at once: what worker processes deliver when every message takes the server
50 ms, as a real provider's does.

`python -m bench.accounts` starts a loopback SMTP server (STARTTLS and AUTH, in its own
process) that answers each message after 50 ms, makes 40 accounts on it, and measures long-
running `python worker.py` processes (as in production, not --burst) delivering:

- the baseline: one process with one connection (LAMPLIGHT_MAIL_WORKER_CONNECTIONS=1), one
  account at a time, as before connection threads; 40 accounts x 10 messages (at that rate 50
  each would take minutes, and the rate does not depend on the count);
- one process with 16, 24 and 32 connections (LAMPLIGHT_MAIL_WORKER_CONNECTIONS), then two and
  four with the default, 40 accounts x 50 messages;
- one process over 10 accounts x 50 messages: its memory against the 40 accounts' (flat).

The workers start, and are ready, before the mail is composed: no process's start-up falls in
the measured span or its CPU. Each figure: messages per second from the first message sent to
the last (the database's sent_at), the peak resident memory (VmHWM) of each worker process, the
workers' CPU and Redis commands per message, the most database connections the workers held
at once (sampled every 0.2 s) and, on PostgreSQL, the transactions they committed. Ratios are
against the baseline measured in the same run. The database is a fresh SQLite file, or a fresh
PostgreSQL database when BENCH_DATABASE_URL names a server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rq import Worker
from sqlalchemy import func, select, text

from bench.throughput import (
    bench_account,
    database,
    scratch_space,
    smtp_sink,
    upgraded_app,
)
from lamplight_mail import PROJECT_ROOT
from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import (
    EmailAccount,
    Message,
    MessageStatus,
    Role,
    User,
)
from lamplight_mail.recipients import Recipient
from tests.factories import make_user

ACCOUNTS = 40
MESSAGES = 50  # per account
BASELINE_MESSAGES = 10  # per account, for the one-connection baseline
SERVER_SECONDS = 0.05  # the server's time to take one message
CONNECTION_COUNTS = (16, 24, 32)  # one process with each, to choose the default
TIMEOUT = 600.0


@dataclass(frozen=True)
class Run:
    label: str
    processes: int
    connections: int  # each process's
    accounts: int
    messages: int
    rate: float  # messages per second, first sent to last
    rss_mb: list[float]  # each worker process's peak resident memory
    cpu_seconds: float  # the worker processes' CPU time while they delivered (no start-up)
    redis_commands: int  # what Redis processed meanwhile (the limiter, RQ, the leases' slots)
    db_connections: int  # the most the workers held at once, all processes together
    db_commits: int | None  # transactions committed meanwhile (PostgreSQL's count; None on SQLite)


def _accounts(port: int, count: int) -> tuple[User, list[EmailAccount]]:
    user = make_user(name="Olive", role=Role.ADMIN)
    accounts = [
        bench_account(
            port,
            owner=make_user(f"operator{number}@charity.example", name=f"Operator {number}"),
            from_name=f"Operator {number}",
        )
        for number in range(count)
    ]
    return user, accounts


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def deliver(
    env: dict[str, str],
    user: User,
    accounts: list[EmailAccount],
    label: str,
    *,
    processes: int,
    messages: int,
    connections: int,
) -> Run:
    """Start `processes` workers with `connections` each, then, once every one is ready (so no
    process's start-up falls inside the measured span or counts in its CPU), compose `messages`
    for each account and wait until all are sent."""
    with _workers(env, processes, connections) as workers:
        _wait_until_ready(workers, label)
        cpu_before = sum(_cpu_seconds(worker.pid) for worker in workers)
        commands_before = _redis_commands()
        commits_before = _commits()
        sends = [
            outbox.create_send(
                user,
                account,
                [Recipient(f"person{i}@example.org", f"Person {i}") for i in range(messages)],
                "Spring newsletter",
                "Dear friend,\n\n" + "We open again on Tuesday.\n" * 30,
            )
            for account in accounts
        ]
        ids = [send.id for send in sends]
        db.session.rollback()  # no read left open while the workers run (see _sent)
        total = messages * len(accounts)
        db_connections = 0
        deadline = time.monotonic() + TIMEOUT
        while _sent(ids) < total:
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError(f"{label}: {_sent(ids)} of {total} sent in time")
            db_connections = max(db_connections, _database_connections(workers))
            time.sleep(0.2)
        rss = [_peak_rss_mb(worker.pid) for worker in workers]
        cpu = sum(_cpu_seconds(worker.pid) for worker in workers) - cpu_before
        first, last = db.session.execute(
            select(func.min(Message.sent_at), func.max(Message.sent_at)).where(
                Message.send_id.in_(ids)
            )
        ).one()
        rate = (total - 1) / (last - first).total_seconds()
        commands = _redis_commands() - commands_before
        commits = None if commits_before is None else _commits() - commits_before
        return Run(
            label,
            len(workers),
            connections,
            len(accounts),
            total,
            rate,
            rss,
            cpu,
            commands,
            db_connections,
            commits,
        )


@contextlib.contextmanager
def _workers(
    env: dict[str, str], processes: int, connections: int
) -> Iterator[list[subprocess.Popen]]:
    """`processes` long-running workers with `connections` each, stopped on leaving."""
    settings = {"LAMPLIGHT_MAIL_WORKER_CONNECTIONS": str(connections)}
    workers = [
        subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "worker.py")],
            env={**env, **settings},
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for _ in range(processes)
    ]
    try:
        yield workers
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=60)


def _wait_until_ready(workers: list[subprocess.Popen], label: str) -> None:
    """Until every worker process has registered with RQ (its start-up done, its loop
    running)."""
    pids = {worker.pid for worker in workers}
    deadline = time.monotonic() + TIMEOUT
    while not pids <= {each.pid for each in Worker.all(queue=outbox.mail_queue())}:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise RuntimeError(f"{label}: the workers did not start")
        time.sleep(0.2)


def _redis_commands() -> int:
    return get_redis().info("stats")["total_commands_processed"]


def _database_connections(workers: list[subprocess.Popen]) -> int:
    """Database connections the workers hold now: PostgreSQL's other sessions on this database
    (the bench's own excluded), or the SQLite file's descriptors open in the worker processes."""
    if db.engine.dialect.name == "postgresql":
        db.session.rollback()
        return db.session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    database = Path(db.engine.url.database).resolve()
    held = 0
    for worker in workers:
        with contextlib.suppress(OSError):  # a descriptor closed while listed
            for descriptor in Path(f"/proc/{worker.pid}/fd").iterdir():
                held += descriptor.resolve() == database
    return held


def _commits() -> int | None:
    if db.engine.dialect.name != "postgresql":
        return None
    db.session.rollback()
    return db.session.scalar(
        text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    )


def _sent(send_ids: list[int]) -> int:
    """How many are sent by now, in a read ended at once: the workers write in other
    processes, and a snapshot held open would keep SQLite's checkpoints from emptying the
    write-ahead log (see bench.throughput.worker_drain)."""
    try:
        return db.session.scalar(
            select(func.count()).where(
                Message.send_id.in_(send_ids), Message.status == MessageStatus.SENT
            )
        )
    finally:
        db.session.rollback()


def main() -> None:
    load_before = os.getloadavg()[0]
    with (
        scratch_space("lm-bench-accounts-") as (folder, redis_url),
        smtp_sink(folder, delay=SERVER_SECONDS) as port,
        database() as url,
        upgraded_app(folder, url, redis_url) as (app, env),
    ):
        user, accounts = _accounts(port, ACCOUNTS)
        default = app.config["WORKER_CONNECTIONS"]
        runs = [
            deliver(
                env,
                user,
                accounts,
                "baseline: 1 process, 1 connection",
                processes=1,
                messages=BASELINE_MESSAGES,
                connections=1,
            ),
            *(
                deliver(
                    env,
                    user,
                    accounts,
                    f"1 process(es), {n} connections each",
                    processes=1,
                    messages=MESSAGES,
                    connections=n,
                )
                for n in CONNECTION_COUNTS
            ),
            *(
                deliver(
                    env,
                    user,
                    accounts,
                    f"{n} process(es), {default} connections each",
                    processes=n,
                    messages=MESSAGES,
                    connections=default,
                )
                for n in (2, 4)
            ),
            deliver(
                env,
                user,
                accounts[:10],
                f"1 process, {default} connections, 10 accounts",
                processes=1,
                messages=MESSAGES,
                connections=default,
            ),
        ]
        backend = db.engine.dialect.name

    baseline = runs[0].rate
    print(f"database: {backend}; server: {SERVER_SECONDS * 1000:.0f} ms a message")
    print(f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    for run in runs:
        memory = ", ".join(f"{mb:.0f}" for mb in run.rss_mb)
        commits = "-" if run.db_commits is None else f"{run.db_commits * 1000 / run.messages:.0f}"
        print(
            f"{run.label:<42} {run.accounts:>3} accounts x {run.messages // run.accounts:>3}: "
            f"{run.rate:7.1f} msg/s  x{run.rate / baseline:5.1f}  "
            f"CPU {run.cpu_seconds * 1000 / run.messages:4.1f} ms/msg  "
            f"Redis {run.redis_commands * 1000 / run.messages:6.0f} cmd/1000 msg  "
            f"DB {run.db_connections:>3} connections at most, {commits} commits/1000 msg  "
            f"peak RSS MB: {memory}"
        )
    by_connections = {
        run.connections: run for run in runs if run.processes == 1 and run.accounts == ACCOUNTS
    }
    first = by_connections[CONNECTION_COUNTS[0]]
    print(
        "1 process, against "
        f"{CONNECTION_COUNTS[0]} connections: "
        + ", ".join(
            f"{n}: x{by_connections[n].rate / first.rate:.2f} msg/s, "
            f"x{max(by_connections[n].rss_mb) / max(first.rss_mb):.2f} RSS"
            for n in CONNECTION_COUNTS[1:]
        )
    )
    print("targets: 1 process >= 200 msg/s; RSS flat from 10 to 40 accounts")


if __name__ == "__main__":
    main()
