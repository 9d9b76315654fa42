"""The worker's health check, run as docker-compose.yml runs it: it passes for a running worker,
fails within the worker's TTL once the worker is frozen (SIGSTOP), passes again when it resumes,
and fails as soon as it has stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.workers import FAST_WORKER_SETTINGS, PROJECT_ROOT, WorkerProcess, explained_by

pytestmark = pytest.mark.slow

# The worker's TTL under FAST_WORKER_SETTINGS: the 1 s sweep interval + the 15 s margin.
TTL_SECONDS = int(FAST_WORKER_SETTINGS["LAMPLIGHT_MAIL_SWEEP_SECONDS"]) + 15
# A check is a Python start-up and one Redis round trip; allow for a loaded machine.
SLACK_SECONDS = 15


def _check_command() -> list[str]:
    """The compose file's health check, its script found beside this Python (the venv's)."""
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    kind, script, *options = compose["services"]["worker"]["healthcheck"]["test"]
    assert kind == "CMD"
    return [str(Path(sys.executable).parent / script), *options]


def _check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        _check_command(),
        env={**env, **FAST_WORKER_SETTINGS},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _wait_for_check(env: dict[str, str], code: int, within: float) -> float:
    """Seconds until the check exits with `code`; fails after `within`."""
    started = time.monotonic()
    while True:
        result = _check(env)
        if result.returncode == code:
            return time.monotonic() - started
        elapsed = time.monotonic() - started
        assert elapsed < within, f"check still exits {result.returncode} after {elapsed:.0f} s"
        time.sleep(0.5)


# The check reads Redis only: one database backend is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_health_check_tells_a_running_worker_from_a_frozen_or_stopped_one(worker_env, tmp_path):
    nobody = _check(worker_env)
    assert nobody.returncode == 1 and "unhealthy: no worker on" in nobody.stderr

    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    with explained_by(worker):
        try:
            _wait_for_check(worker_env, 0, within=60)
            assert "healthy: a worker on" in _check(worker_env).stdout
            # An idle worker stays healthy for longer than its TTL: its heartbeat is the loop's.
            idle_until = time.monotonic() + TTL_SECONDS + 2
            while time.monotonic() < idle_until:
                result = _check(worker_env)
                assert result.returncode == 0, result.stderr
                time.sleep(1)

            os.kill(worker.process.pid, signal.SIGSTOP)  # hung: alive, but its loop stands still
            try:
                frozen = _wait_for_check(worker_env, 1, within=TTL_SECONDS + SLACK_SECONDS)
                assert "heartbeat is" in _check(worker_env).stderr
            finally:
                os.kill(worker.process.pid, signal.SIGCONT)
            _wait_for_check(worker_env, 0, within=30)
        finally:
            worker.stop()
    assert worker.process.returncode == 0, worker.output()
    # A stopped worker leaves RQ's registry: the check fails at once, not after the TTL.
    stopped = _check(worker_env)
    assert stopped.returncode == 1, stopped.stderr
    # The frozen worker was reported once its heartbeat was older than the TTL, not at the stop
    # itself (its last heartbeat came a dequeue timeout, 1 s, plus a sweep before it at most).
    assert frozen >= TTL_SECONDS / 2, frozen
