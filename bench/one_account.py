"""One account's mail, timed at the server: the worker against a bare smtplib loop and against
django-post_office, in one run.

`python -m bench.one_account` starts a loopback aiosmtpd sink with STARTTLS and AUTH in its own
process (no latency: it answers each message at once; it offers PIPELINING as Office 365 and
Gmail do, which the worker uses and smtplib does not) that notes when it accepts each message,
so every contender is timed from the first message the server accepted to the last: processes'
start-up, migrations and queueing are left out. Each sends MESSAGES messages:

(a) bare smtplib sending pre-rendered messages over one connection;
(b) one `python worker.py --burst` draining MESSAGES queued messages of one account, the limiter
    on as in production (limits set high enough not to bind), marks durable, up to the
    account's 3 connections;
(p) django-post_office's `send_queued` (one process, five threads, SQLite; see
    bench.post_office_sender).

Each figure is the best of three interleaved runs; it prints b/a (target >= 0.7) and b/p
(target >= 1.2), and the load average. The worker's database is a fresh SQLite file, or
PostgreSQL when BENCH_DATABASE_URL names a server (post_office stays on SQLite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

from bench.throughput import (
    REPEATS,
    Span,
    TimedSink,
    bench_account,
    database,
    raw_smtplib,
    scratch_space,
    timed_sink,
    upgraded_app,
    worker_drain,
)
from lamplight_mail.extensions import db
from tests.factories import make_user
from tests.workers import PROJECT_ROOT

MESSAGES = 2_000


def _timed(sink: TimedSink, run: Callable[[], object]) -> Span:
    """`run`'s messages as the sink saw them; fails unless it accepted every one."""
    sink.reset()
    run()
    span = sink.span()
    if span.count != MESSAGES:
        raise RuntimeError(f"the sink accepted {span.count} of {MESSAGES} messages")
    return span


def post_office(port: int) -> None:
    """(p) django-post_office sending MESSAGES queued emails, in a process of its own."""
    folder = tempfile.mkdtemp(prefix="lm-bench-post-office-")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bench.post_office_sender", str(port), str(MESSAGES), folder],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if result.returncode:
        raise RuntimeError(f"post_office failed:\n{result.stderr[-3000:]}")


def main() -> None:
    load_before = os.getloadavg()
    with (
        scratch_space() as (folder, redis_url),
        timed_sink(folder) as sink,
        database() as url,
        upgraded_app(folder, url, redis_url) as (app, env),
    ):
        user = make_user(name="Olive")
        account = bench_account(sink.port, default_for_operators=True)
        bare, worker, theirs = [], [], []
        # Interleaved, so that load from elsewhere weighs on each alike.
        for _ in range(REPEATS):
            bare.append(_timed(sink, lambda: raw_smtplib(sink.port, MESSAGES)))
            worker.append(
                _timed(
                    sink,
                    lambda: worker_drain(app, env, user, account, messages=MESSAGES),
                )
            )
            theirs.append(_timed(sink, lambda: post_office(sink.port)))
        backend = db.engine.dialect.name
    load_after = os.getloadavg()

    a, b, p = (max(span.rate for span in runs) for runs in (bare, worker, theirs))
    print(f"one account, {MESSAGES:,} messages, timed from the first accept to the last")
    print(f"worker's database: {backend}; load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"(a) bare smtplib, one connection, pre-rendered: {a:8.0f} msgs/s")
    print(f"(b) python worker.py --burst, limiter on:       {b:8.0f} msgs/s")
    print(f"(p) django-post_office send_queued, 5 threads:  {p:8.0f} msgs/s")
    print(f"    b/a = {b / a:.2f}  (target >= 0.7)")
    print(f"    b/p = {b / p:.2f}  (target >= 1.2)")
    for name, runs in (("a", bare), ("b", worker), ("p", theirs)):
        print(f"    ({name}) each run: " + ", ".join(f"{span.rate:.0f}" for span in runs))


if __name__ == "__main__":
    main()
