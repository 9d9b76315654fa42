"""Helpers for the outbox, worker and compose tests: accounts pointed at a test SMTP server,
made through the models and account services (not the account forms)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from lamplight_mail.accounts import editing
from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AccountKind,
    AuthMethod,
    EmailAccount,
    Message,
    Role,
    Security,
    User,
)
from tests.conftest import SMTP_PASSWORD, SMTP_USER

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def make_user(email: str = "olive@charity.example", role: Role = Role.OPERATOR) -> User:
    user = User(email=email, name=email.split("@")[0].title(), role=role)
    user.set_password("correct horse battery")
    db.session.add(user)
    db.session.flush()
    return user


def make_account(
    server=None,
    *,
    owner: User | None = None,
    password: str | None = SMTP_PASSWORD,
    from_email: str = SMTP_USER,
    from_name: str = "Riverside Food Bank",
    connection_cap: int = 3,
    security: Security = Security.TLS,
) -> EmailAccount:
    """An account sending through `server` (a tests.smtp_servers.SMTPServer), committed."""
    account = EmailAccount(
        kind=AccountKind.OPERATOR if owner else AccountKind.SYSTEM,
        owner_id=owner.id if owner else None,
        default_for_operators=owner is None,
        provider="custom",
        host=server.host if server else "127.0.0.1",
        port=server.port if server else 2525,
        auth_method=AuthMethod.LOGIN,
        security=security,
        username=SMTP_USER,
        from_email=from_email,
        from_name=from_name,
        daily_limit=100_000,
        per_minute_limit=100_000,
        max_recipients=500,
        connection_cap=connection_cap,
    )
    if password is not None:
        editing.set_password(account, password)
    db.session.add(account)
    db.session.commit()
    return account


def statuses(send_id: int) -> dict[str, int]:
    """{status: count} of the send's messages, read fresh from the database (a new transaction:
    an open one would keep seeing its own snapshot on SQLite)."""
    db.session.rollback()
    counts: dict[str, int] = {}
    for status in db.session.scalars(select(Message.status).where(Message.send_id == send_id)):
        counts[status.value] = counts.get(status.value, 0) + 1
    return counts


def queued_job_args(app: Flask) -> list[tuple]:
    """The arguments of every job waiting on the mail queue."""
    with app.app_context():
        queue = outbox.mail_queue()
    return [tuple(job.args) for job in queue.get_jobs()]


def wait_until(condition: Callable[[], object], timeout: float = 60.0, every: float = 0.1):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s: {condition.__doc__ or condition}")


# Worker settings that keep the tests quick: short leases and retries, a fast sweep.
FAST_WORKER_SETTINGS = {
    "LAMPLIGHT_MAIL_LEASE_SECONDS": "3",
    "LAMPLIGHT_MAIL_SWEEP_SECONDS": "1",
    "LAMPLIGHT_MAIL_RETRY_BASE_SECONDS": "1",
    "LAMPLIGHT_MAIL_RETRY_MAX_SECONDS": "2",
    "LAMPLIGHT_MAIL_SMTP_TIMEOUT": "10",
}


def worker_command(*args: str) -> list[str]:
    return [sys.executable, str(PROJECT_ROOT / "worker.py"), *args]


def run_burst_worker(
    env: dict[str, str], timeout: float = 120, **settings: str
) -> subprocess.CompletedProcess:
    """`python worker.py --burst` to completion; fails the test if the worker failed."""
    result = subprocess.run(
        worker_command("--burst"),
        env={**env, **FAST_WORKER_SETTINGS, **settings},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]  # a job that raised
    return result


class WorkerProcess:
    """A long-running `python worker.py` in its own process group (its scheduler child too)."""

    def __init__(self, env: dict[str, str], log_path: Path, **settings: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            worker_command(),
            env={**env, **FAST_WORKER_SETTINGS, **settings},
            cwd=PROJECT_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the worker and everything it started: as if the machine was lost."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        """A warm shutdown, the way ops stop a worker."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def explained_by(*workers: WorkerProcess) -> Iterator[None]:
    """On a failed assertion, show what the workers logged."""
    try:
        yield
    except AssertionError as error:
        logs = "\n".join(f"--- {w.log_path.name}\n{w.output()}" for w in workers)
        raise AssertionError(f"{error}\n{logs}") from None


def redis_values(client) -> list[bytes]:
    """Every key and value Redis holds (hashes, strings, lists), and, for RQ's compressed job
    payloads, what they inflate to: what anyone reading Redis would see."""
    values: list[bytes] = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == b"hash":
            values.extend(client.hgetall(key).values())
        elif kind == b"string":
            values.append(client.get(key))
        elif kind == b"list":
            values.extend(client.lrange(key, 0, -1))
    inflated = []
    for value in values:
        with contextlib.suppress(zlib.error):
            inflated.append(zlib.decompress(value))
    return values + inflated


@contextmanager
def running_workers(
    env: dict[str, str], folder: Path, count: int, **settings: str
) -> Iterator[list]:
    """`count` long-running workers with `settings`; stopped (warmly) on leaving, their logs
    shown when an assertion fails."""
    with ExitStack() as stack:
        workers = []
        for number in range(count):
            worker = WorkerProcess(env, folder / f"worker-{number}.log", **settings)
            stack.callback(worker.stop)
            workers.append(worker)
        with explained_by(*workers):
            yield workers
