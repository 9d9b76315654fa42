"""Issue 10, item 17: production fails closed; /dev/inbox is for admins; RQ jobs are JSON, so
whoever can write to Redis cannot make a worker run code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from rq import Queue
from rq.serializers import DefaultSerializer

from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import get_redis
from tests.factories import queued_job_args
from tests.workers import FAST_WORKER_SETTINGS, PROJECT_ROOT, worker_command

GOOD_SECRET = "s" * 48
GOOD_KEY = Fernet.generate_key().decode()
PRODUCTION = {
    "LAMPLIGHT_MAIL_ENV": "production",
    "SECRET_KEY": GOOD_SECRET,
    "LAMPLIGHT_MAIL_KEYS": GOOD_KEY,
    "LAMPLIGHT_MAIL_METRICS_TOKEN": "metrics-token-for-tests",
    "DATABASE_URL": "sqlite:////nonexistent/never-opened.sqlite",
    "REDIS_URL": "redis://127.0.0.1:1/0",
}


def _start(tmp_path: Path, **changes: str | None) -> subprocess.CompletedProcess:
    """Import app.py (what gunicorn and `flask --app app` do) with a production environment."""
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    env.update(PRODUCTION)
    env["LAMPLIGHT_MAIL_INSTANCE"] = str(tmp_path / "instance")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_starts_with_everything_set(tmp_path):
    result = _start(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"SECRET_KEY": "short-but-not-empty-31-bytes-xx"}, "SECRET_KEY shorter than 32 bytes"),
        ({"LAMPLIGHT_MAIL_KEYS": "not-a-fernet-key"}, "key 1 is not a Fernet key"),
        ({"LAMPLIGHT_MAIL_KEYS": f"{GOOD_KEY},{'A' * 20}"}, "key 2 is not a Fernet key"),
    ],
)
def test_production_refuses_to_start_and_says_why(tmp_path, changes, said):
    result = _start(tmp_path, **changes)
    assert result.returncode != 0
    assert said in result.stderr
    # Names, never values: a secret must not reach a log through a refusal.
    for value in changes.values():
        if value:
            assert value not in result.stderr
    assert not (tmp_path / "instance" / "redis").exists()  # no embedded fallback was started


def test_a_bad_key_is_refused_in_development_too(tmp_path):
    result = _start(tmp_path, LAMPLIGHT_MAIL_ENV="development", LAMPLIGHT_MAIL_KEYS="nope")
    assert result.returncode != 0
    assert "key 1 is not a Fernet key" in result.stderr


def test_dev_inbox_is_for_admins_only(auth, browser):
    assert browser.get("/dev/inbox").status_code == 302  # to /login
    auth.login_operator()
    assert browser.get("/dev/inbox").status_code == 403
    assert browser.get("/dev/inbox/anything.eml").status_code == 403
    auth.logout()
    auth.login_admin()
    assert browser.get("/dev/inbox").status_code == 200


def test_jobs_are_json_with_ids_only(app, auth, browser):
    from lamplight_mail.extensions import db
    from lamplight_mail.models import User
    from tests.factories import make_account

    user_id = auth.login_operator()
    with app.app_context():
        account = make_account(owner=db.session.get(User, user_id))
        account_id = account.id
    response = browser.post(
        "/compose", {"recipients": "amy@example.org", "subject": "Hi", "body": "Hello"}
    )
    assert response.status_code == 302
    assert queued_job_args(app) == [(account_id,)]
    redis = get_redis(app)
    job_keys = [key for key in redis.scan_iter("rq:job:*") if redis.type(key) == b"hash"]
    assert job_keys
    for key in job_keys:
        func, _instance, args, _kwargs = json.loads(zlib.decompress(redis.hget(key, "data")))
        assert (func, args) == (outbox.DELIVER_JOB, [account_id])


class _RunsCode:
    """What an attacker who can write to Redis would plant: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_job_planted_in_redis_runs_no_code(app, worker_env, tmp_path):
    marker = tmp_path / "code-ran"
    with app.app_context():
        planted = Queue(
            app.config["MAIL_QUEUE_NAME"],
            connection=get_redis(app),
            serializer=DefaultSerializer,
        )
        planted.enqueue(outbox.DELIVER_JOB, _RunsCode(marker))
    result = subprocess.run(
        worker_command("--burst"),
        env={**worker_env, **FAST_WORKER_SETTINGS},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not marker.exists(), "the worker unpickled a job from Redis"
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
