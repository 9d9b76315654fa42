"""Many accounts at once: what worker processes deliver when every message takes the server
50 ms, as a real provider's does.

`python -m bench.accounts` starts a loopback SMTP server (STARTTLS and AUTH, in its own
process) that answers each message after 50 ms, makes 40 accounts on it, and measures long-
running `python worker.py` processes (as in production, not --burst) delivering:

- the baseline: one process with one connection (LAMPLIGHT_MAIL_WORKER_CONNECTIONS=1), one
  account at a time, as before connection threads; 40 accounts x 10 messages (at that rate 50
  each would take minutes, and the rate does not depend on the count);
- one, two and four processes with the default connections, 40 accounts x 50 messages;
- one process over 10 accounts x 50 messages: its memory against the 40 accounts' (flat).

Each figure: messages per second from the first message sent to the last (the database's
sent_at), and the peak resident memory (VmHWM) of each worker process. Ratios are against the
baseline measured in the same run. The database is a fresh SQLite file, or a fresh PostgreSQL
database when BENCH_DATABASE_URL names a server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import func, select

from bench.throughput import (
    app_and_worker_env,
    bench_account,
    database,
    smtp_sink,
)
from lamplight_mail import PROJECT_ROOT
from lamplight_mail.delivery import outbox
from lamplight_mail.dev import embedded_redis
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
TIMEOUT = 600.0


@dataclass(frozen=True)
class Run:
    label: str
    processes: int
    accounts: int
    messages: int
    rate: float  # messages per second, first sent to last
    rss_mb: list[float]  # each worker process's peak resident memory
    cpu_seconds: float  # the worker processes' CPU time, start-up included
    redis_commands: int  # what Redis processed meanwhile (the limiter, RQ, the leases' slots)


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
    connections: int | None = None,
) -> Run:
    """Compose `messages` for each account, run `processes` workers until all are sent."""
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
    commands_before = _redis_commands()
    total = messages * len(accounts)
    settings = {"LAMPLIGHT_MAIL_WORKER_CONNECTIONS": str(connections)} if connections else {}
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
        deadline = time.monotonic() + TIMEOUT
        while _sent(ids) < total:
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError(f"{label}: {_sent(ids)} of {total} sent in time")
            time.sleep(0.2)
        rss = [_peak_rss_mb(worker.pid) for worker in workers]
        cpu = sum(_cpu_seconds(worker.pid) for worker in workers)
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=60)
    first, last = db.session.execute(
        select(func.min(Message.sent_at), func.max(Message.sent_at)).where(Message.send_id.in_(ids))
    ).one()
    rate = (total - 1) / (last - first).total_seconds()
    commands = _redis_commands() - commands_before
    return Run(label, processes, len(accounts), total, rate, rss, cpu, commands)


def _redis_commands() -> int:
    return get_redis().info("stats")["total_commands_processed"]


def _sent(send_ids: list[int]) -> int:
    db.session.rollback()  # a fresh read: the workers write in other processes
    return db.session.scalar(
        select(func.count()).where(
            Message.send_id.in_(send_ids), Message.status == MessageStatus.SENT
        )
    )


def main() -> None:
    load_before = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="lm-bench-accounts-"))
    redis_url = embedded_redis.ensure_running(folder / "redis", persist=False)
    try:
        with smtp_sink(folder, delay=SERVER_SECONDS) as port, database() as url:
            app, env = app_and_worker_env(folder, url, redis_url)
            with app.app_context():
                upgrade()
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
                            f"{n} process(es), {default} connections each",
                            processes=n,
                            messages=MESSAGES,
                        )
                        for n in (1, 2, 4)
                    ),
                    deliver(
                        env,
                        user,
                        accounts[:10],
                        f"1 process, {default} connections, 10 accounts",
                        processes=1,
                        messages=MESSAGES,
                    ),
                ]
                backend = db.engine.dialect.name
                db.session.remove()
                db.engine.dispose()
    finally:
        embedded_redis.stop(folder / "redis")
        shutil.rmtree(folder, ignore_errors=True)

    baseline = runs[0].rate
    print(f"database: {backend}; server: {SERVER_SECONDS * 1000:.0f} ms a message")
    print(f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    for run in runs:
        memory = ", ".join(f"{mb:.0f}" for mb in run.rss_mb)
        print(
            f"{run.label:<42} {run.accounts:>3} accounts x {run.messages // run.accounts:>3}: "
            f"{run.rate:7.1f} msg/s  x{run.rate / baseline:5.1f}  "
            f"CPU {run.cpu_seconds * 1000 / run.messages:4.1f} ms/msg  "
            f"Redis {run.redis_commands * 1000 / run.messages:6.0f} cmd/1000 msg  "
            f"peak RSS MB: {memory}"
        )
    print("targets: 1 process >= 200 msg/s; RSS flat from 10 to 40 accounts")


if __name__ == "__main__":
    main()
