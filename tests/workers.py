"""Processes the tests start: `python worker.py` (in a burst, or running on until stopped), the
web app served by `flask run` next to a worker (the browser tests), and the bodies of processes
that race each other for one account's limits or its access token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from lamplight_mail import create_app
from lamplight_mail.delivery import limits
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount
from lamplight_mail.oauth import tokens
from tests.smtp_servers import SMTPServer, free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Generous: two cores shared with other engineers' test runs.
STARTUP_SECONDS = 60.0


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

    def terminate(self) -> float:
        """SIGTERM to the worker alone, as `docker compose stop` and systemd send it: the
        seconds it took to exit. Its scheduler child is stopped after."""
        os.kill(self.process.pid, signal.SIGTERM)
        asked = time.monotonic()
        self.process.wait(timeout=30)
        stopped_after = time.monotonic() - asked
        self.stop()
        return stopped_after

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


# --- The app served for real, next to a worker (the browser tests) ----------------------


class WebProcess(WorkerProcess):
    """`flask run` on 127.0.0.1 with a worker's lifecycle (its own process group, its output in
    a log file, stopped with SIGTERM, then SIGKILL), only started with another command."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "flask", "--app", "app", "run"),
                *("--host", "127.0.0.1", "--port", str(self.port)),
                *("--no-reload", "--no-debugger"),
            ],
            env={**env, "FLASK_DEBUG": "0"},
            cwd=PROJECT_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _health(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            return json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None  # not listening yet, or 503 while something is still starting


class LiveApp:
    """The running app: its address, and the SMTP server its accounts point at."""

    def __init__(self, web: WebProcess, worker: WorkerProcess, smtp: SMTPServer) -> None:
        self.web = web
        self.worker = worker
        self.smtp = smtp
        self.url = web.url

    def wait_until_ready(self) -> None:
        """Until /healthz says the database and Redis answer and the worker has registered."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            for name, process in (("web", self.web), ("worker", self.worker)):
                if process.process.poll() is not None:
                    raise AssertionError(f"the {name} process exited:\n{self.logs()}")
            health = _health(self.url)
            if health and health.get("workers", 0) >= 1:
                return
            time.sleep(0.2)
        raise AssertionError(f"the app was not ready in {STARTUP_SECONDS:.0f} s:\n{self.logs()}")

    def logs(self) -> str:
        return f"--- web\n{self.web.output()}\n--- worker\n{self.worker.output()}"


# --- Bodies of racing processes (spawned: they import this module and build their own app) ---


@contextmanager
def _account_in_own_app(config: dict, account_id: int) -> Iterator[EmailAccount]:
    """The account, read by an app of this process's own and detached from its session (the
    limiter and the token cache need only its settings), inside that app's context."""
    app = create_app(config)
    with app.app_context():
        account = db.session.get(EmailAccount, account_id)
        db.session.expunge(account)
        db.session.remove()
        yield account


def acquire_until_empty(config: dict, account_id: int, work, results, rounds: int, barrier):
    """Each round: take due messages off `work` until it is empty, asking the limiter for each;
    report (round, allowed, now ms, not-before ms) per message."""
    with _account_in_own_app(config, account_id) as account:
        for number in range(rounds):
            barrier.wait()
            while True:
                item = work.get()
                if item is None:
                    break
                decision = limits.acquire(account)
                not_before = decision.not_before and _ms(decision.not_before)
                results.put((number, decision.allowed, _ms(decision.now), not_before))
            barrier.wait()


def acquire_paced(config: dict, account_id: int, work, results):
    """Send every message handed out, waiting for the limiter's moment whenever refused."""
    with _account_in_own_app(config, account_id) as account:
        while work.get() is not None:
            while not (decision := limits.acquire(account)).allowed:
                time.sleep(max(0.0, (decision.not_before - decision.now).total_seconds()))
            results.put(_ms(decision.now))


def hold_connections(config: dict, account_id: int, holds: int, state, lock) -> None:
    """Hold `holds` connection slots one after another, noting how many are held at once."""
    with _account_in_own_app(config, account_id) as account:
        done = 0
        while done < holds:
            with limits.connection_slot(account) as slot:
                if slot is None:
                    time.sleep(0.005)
                    continue
                with lock:
                    state[0] += 1
                    state[1] = max(state[1], state[0])
                time.sleep(0.02)
                assert slot.renew()
                with lock:
                    state[0] -= 1
            done += 1


def fetch_access_token(config: dict, account_id: int, barrier) -> tuple[int, str]:
    """Once every process is at `barrier`, ask for the account's access token, as a worker
    about to send does: (this process's id, the token, or why there was none)."""
    with _account_in_own_app(config, account_id) as account:
        barrier.wait()
        try:
            return os.getpid(), tokens.access_token(account)
        except tokens.TokenFailure as failure:
            # Said as text: the exception itself does not survive pickling back to the test.
            return os.getpid(), f"no token: {failure.answer}"


def _ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)
