"""The production stack's docker-compose.yml, checked against the app itself (no Docker engine
runs in CI): its services, commands, settings, Redis options and the workers' stop."""

from __future__ import annotations

import re
import tomllib
from itertools import pairwise

import yaml

from lamplight_mail.config import load_config
from lamplight_mail.delivery import worker as mail_worker
from lamplight_mail.extensions import size_connection_pool
from tests.workers import PROJECT_ROOT


def test_compose_redis_requires_the_password_the_app_uses():
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert re.search(r'"--requirepass", "\$\{REDIS_PASSWORD:\?', compose)
    url = re.search(r"REDIS_URL: (\S+)", compose).group(1)
    assert url.startswith("redis://:${REDIS_PASSWORD:?")
    assert "REDIS_PASSWORD=" in (PROJECT_ROOT / ".env.example").read_text()


def _compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def _names(text: str) -> set[str]:
    return set(
        re.findall(r"\b(?:LAMPLIGHT_MAIL_[A-Z_]+|DATABASE_URL|REDIS_URL|SECRET_KEY)\b", text)
    )


def test_every_setting_the_compose_file_gives_the_app_is_one_the_app_reads():
    services = _compose()["services"]
    package = PROJECT_ROOT / "lamplight_mail"
    config = (package / "config.py").read_text()
    known = _names(config) | _names((package / "__init__.py").read_text())
    for name in ("web", "worker"):
        given = set(services[name]["environment"])
        assert given - {"PATH"} <= known, f"{name}: {given - known - {'PATH'}}"
    # Whatever production requires comes from .env (every name the app refuses to start
    # without is there to be filled in).
    env_example = _names((PROJECT_ROOT / ".env.example").read_text())
    required = re.search(r"REQUIRED_IN_PRODUCTION = \(([^)]*)\)", config, re.S).group(1)
    assert _names(required) <= env_example | set(services["web"]["environment"])
    assert services["web"]["env_file"] == services["worker"]["env_file"] == ".env"


def test_the_services_run_the_apps_own_commands():
    services = _compose()["services"]
    assert set(services) >= {"postgres", "redis", "web", "worker", "mailpit"}
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert services["worker"]["command"] == ["lamplight-mail-worker"]
    assert scripts["lamplight-mail-worker"] == "lamplight_mail.delivery.worker:main"
    web = services["web"]["command"]
    assert "db upgrade" in web  # migrations first, then the app
    assert re.search(r"gunicorn .*'lamplight_mail:create_app\(\)'", web)
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_workers_scale_restart_and_stop_gracefully(tmp_path):
    services = _compose()["services"]
    worker = services["worker"]
    # --scale worker=N needs no fixed name or host port per container.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["restart"] == "unless-stopped"
    grace = int(worker["stop_grace_period"].removesuffix("s"))
    smtp_timeout = load_config(str(tmp_path), {})["SMTP_TIMEOUT_SECONDS"]
    # Longer than the longest a message on the wire can take, and than the worker's 10 s stop.
    assert grace > smtp_timeout and grace > 10
    for name in ("postgres", "redis", "web", "worker"):
        assert "healthcheck" in services[name], name
        assert services[name]["restart"] == "unless-stopped", name


def _seconds(duration: str) -> int:
    assert re.fullmatch(r"\d+s", duration), f"write {duration!r} in seconds"
    return int(duration.removesuffix("s"))


def test_the_worker_health_check_is_the_apps_own_check_and_sees_a_stop_in_time(tmp_path):
    check = _compose()["services"]["worker"]["healthcheck"]
    kind, script, *options = check["test"]
    assert kind == "CMD"
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[script] == "lamplight_mail.delivery.worker:main"
    # The options are the worker's own (argparse exits on one it does not know).
    assert mail_worker.parser().parse_args(options).check
    # A worker that stops heartbeating fails the first check after its TTL: with the default
    # settings that is within one interval, and a slow check is cut off before the next.
    config = load_config(str(tmp_path), {})
    ttl = config["MAIL_SWEEP_SECONDS"] + mail_worker.TTL_MARGIN_SECONDS
    assert ttl < _seconds(check["interval"])
    assert _seconds(check["timeout"]) < _seconds(check["interval"])
    assert check["retries"] >= 1 and _seconds(check["start_period"]) > 0


# A web process handles one request at a time: its session's connection, and a second while it
# rebuilds an account's limiter windows from the sent log (delivery/limits.py).
WEB_PROCESS_CONNECTIONS = 2
# PostgreSQL keeps these for superusers (superuser_reserved_connections).
RESERVED_CONNECTIONS = 3


def test_postgres_admits_every_workers_pool_beside_the_web(tmp_path):
    services = _compose()["services"]
    command = services["postgres"]["command"]
    settings = dict(value.split("=", 1) for flag, value in pairwise(command) if flag == "-c")
    worker = services["worker"]
    default = re.fullmatch(
        r"\$\{LAMPLIGHT_MAIL_WORKER_CONNECTIONS:-(\d+)\}",
        worker["environment"]["LAMPLIGHT_MAIL_WORKER_CONNECTIONS"],
    ).group(1)
    config = load_config(
        str(tmp_path),
        {
            "LAMPLIGHT_MAIL_WORKER_CONNECTIONS": default,
            "DATABASE_URL": worker["environment"]["DATABASE_URL"],
        },
    )
    size_connection_pool(config)  # as create_app sizes each process's pool
    pool = config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"]
    web_processes = int(re.search(r"--workers (\d+)", services["web"]["command"]).group(1))
    needed = (
        worker["deploy"]["replicas"] * pool
        + web_processes * WEB_PROCESS_CONNECTIONS
        + RESERVED_CONNECTIONS
    )
    assert int(settings["max_connections"]) >= needed


def test_redis_keeps_what_rq_and_the_limiter_need():
    command = _compose()["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert options["--requirepass"].startswith("${REDIS_PASSWORD:?")


def test_mailpit_runs_only_in_the_development_profile():
    services = _compose()["services"]
    assert services["mailpit"]["profiles"] == ["dev"]
    assert all("profiles" not in services[name] for name in ("postgres", "redis", "web", "worker"))
