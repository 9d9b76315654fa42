"""`make run`: everything on embedded defaults, in one terminal; Ctrl-C stops it all.

Starts (when not configured otherwise) the embedded Redis, the local SMTP catcher on
127.0.0.1:1025, one worker and the web server on http://127.0.0.1:5000.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lamplight_mail import PROJECT_ROOT, create_app
from lamplight_mail.dev import embedded_redis
from lamplight_mail.dev.smtp_catcher import (
    CERT_FOLDER,
    INBOX_FOLDER,
    PASSWORD_ENV,
    ensure_certificate,
    start_catcher,
    trust_bundle,
)

WEB_PORT = int(os.environ.get("PORT", 5000))


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same orderly shutdown as Ctrl-C


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    app = create_app()
    instance = Path(app.instance_path)
    env = dict(os.environ)
    started_redis = False
    if not app.config["REDIS_URL"]:
        env["REDIS_URL"] = embedded_redis.ensure_running(instance / "redis")
        started_redis = True
        print(f"* embedded Redis at {env['REDIS_URL']}")
    certificate = ensure_certificate(instance / CERT_FOLDER)
    # The worker and the web server (test connection) trust the catcher's certificate; only
    # these children, only under make run.
    env["SSL_CERT_FILE"] = str(trust_bundle(certificate, instance / CERT_FOLDER))
    catcher = start_catcher(instance / INBOX_FOLDER, app.config["DEV_SMTP_PORT"], certificate)
    signing_in = (
        "the password in " + PASSWORD_ENV if os.environ.get(PASSWORD_ENV) else "any password"
    )
    print(
        f"* SMTP catcher on 127.0.0.1:{app.config['DEV_SMTP_PORT']} -> /dev/inbox "
        f"(STARTTLS optional; AUTH LOGIN after it with {signing_in})"
    )

    children = [
        subprocess.Popen([sys.executable, str(PROJECT_ROOT / "worker.py")], env=env),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "app",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(WEB_PORT),
            ],
            env=env,
            cwd=PROJECT_ROOT,
        ),
    ]
    print(f"* Lamplight Mail on http://127.0.0.1:{WEB_PORT}  (Ctrl-C stops everything)")
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("* a process stopped; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        catcher.stop()
        if started_redis:
            embedded_redis.stop(instance / "redis")


if __name__ == "__main__":
    sys.exit(main())
