"""An install as deployed: `pip install .` (not editable) gives a package that finds its
templates, static files and migrations without the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

SERVE_LOGIN = """
import lamplight_mail, sys
from lamplight_mail import create_app
assert lamplight_mail.__file__.startswith(sys.argv[1]), lamplight_mail.__file__
client = create_app().test_client()
page = client.get("/login")
assert page.status_code == 200, page.status_code
assert b'name="password"' in page.data
assert client.get("/static/style.css").status_code == 200
print("served /login from", lamplight_mail.__file__)
"""


@pytest.mark.slow
def test_a_non_editable_install_upgrades_its_database_and_serves_login(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(PROJECT_ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    installed = target / "lamplight_mail"
    for folder in ("templates", "static", "migrations"):
        assert (installed / folder).is_dir() and not (installed / folder).is_symlink(), folder
    assert (target / "bin" / "lamplight-mail-worker").is_file()  # the compose file's worker
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **os.environ,
        # The installed copy first; this interpreter's other packages (Flask...) after it.
        "PYTHONPATH": str(target),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deployed.sqlite'}",
        "LAMPLIGHT_MAIL_INSTANCE": str(tmp_path / "instance"),
    }
    flask = [sys.executable, "-m", "flask", "--app", "lamplight_mail:create_app"]
    for command in (
        ["db", "upgrade"],
        [
            "users",
            "create",
            "admin@charity.example",
            "--name",
            "Admin",
            "--role",
            "admin",
            "--password",
            "a long enough password",
        ],
    ):
        done = subprocess.run(
            flask + command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
    served = subprocess.run(
        [sys.executable, "-c", SERVE_LOGIN, str(target)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    assert "served /login" in served.stdout
