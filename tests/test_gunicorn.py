"""The production web server: gunicorn serves the app as docker-compose.yml runs it, answers
/healthz, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.smtp_servers import free_port
from tests.workers import PROJECT_ROOT, wait_until


def test_gunicorn_serves_healthz_and_stops_on_sigterm(app, worker_env, tmp_path: Path):
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "lamplight_mail:create_app()",
        ],
        env=worker_env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def healthz() -> dict | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    return json.load(r) if r.status == 200 else None
            except OSError:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                return None

        wait_until(healthz, timeout=60, every=0.2)
        body = healthz()
        assert body is not None and body["db"] == "ok" and body["redis"] == "ok", body
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "gunicorn.log").read_text()
