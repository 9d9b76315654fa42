"""Fixtures: real Redis, real SMTP servers, SQLite always and PostgreSQL when TEST_DATABASE_URL
is set. Chain: database_url -> app -> client -> auth (flaskr's shape). Fixtures only: the
helpers they hand out live in tests/factories.py, tests/pages.py and tests/workers.py."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import trustme
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lamplight_mail import create_app
from lamplight_mail.dev import embedded_redis
from lamplight_mail.extensions import db
from tests.ci_support import unavailable
from tests.factories import SMTP_PASSWORD, SMTP_USER
from tests.pages import AuthActions, Browser
from tests.smtp_servers import SMTPServer, bound_socket, server_context, serving

# CI gates a landing: there the property tests try the same examples every run, so a red run
# is a regression rather than a new random find. Elsewhere hypothesis explores afresh.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
# Always both: without TEST_DATABASE_URL the PostgreSQL half is skipped, and the summary says
# so (under CI it fails instead; see tests/ci_support.py).
BACKENDS = ["sqlite", "postgresql"]


# --- Redis: one real server for the session, emptied before each test that uses it ---------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    # A short path: unix socket paths are limited to about 100 characters.
    folder = tempfile.mkdtemp(prefix="lm-redis-")
    yield embedded_redis.ensure_running(folder, persist=False)
    embedded_redis.stop(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def own_redis() -> Iterator[tuple[str, str]]:
    """An embedded Redis of the test's own, which it may stop (never the shared one): its
    folder and URL."""
    folder = tempfile.mkdtemp(prefix="lm-own-")  # short: unix socket paths are limited
    yield folder, embedded_redis.ensure_running(folder, persist=False)
    embedded_redis.stop(folder)
    shutil.rmtree(folder, ignore_errors=True)


# --- Databases: migrated once per session into a template, copied for each test ------------


def _migrate(url: str, instance: Path) -> None:
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "FERNET_KEYS": [Fernet.generate_key().decode()]}
    )
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sqlite-template")
    path = folder / "template.sqlite"
    _migrate(f"sqlite:///{path}", folder)
    return path


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert TEST_DATABASE_URL, "PostgreSQL tests need TEST_DATABASE_URL"
    name = f"lm_template_{os.getpid()}"
    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    _migrate(
        make_url(TEST_DATABASE_URL).set(database=name).render_as_string(False),
        tmp_path_factory.mktemp("pg-template"),
    )
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


_database_numbers = itertools.count()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database of each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "lamplight_mail.sqlite"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    if not TEST_DATABASE_URL:
        unavailable(
            "PostgreSQL tests need TEST_DATABASE_URL "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)",
            "PostgreSQL tests",
        )
    template = request.getfixturevalue("postgres_template")
    name = f"lm_test_{os.getpid()}_{next(_database_numbers)}"
    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield make_url(TEST_DATABASE_URL).set(database=name).render_as_string(False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# --- The app -------------------------------------------------------------------------------


@pytest.fixture
def fernet_keys() -> list[str]:
    return [Fernet.generate_key().decode()]


@pytest.fixture
def app_config(
    request: pytest.FixtureRequest,
    database_url: str,
    redis_url: str,
    redis_client: redis.Redis,
    fernet_keys: list[str],
    tmp_path: Path,
) -> dict:
    """What the app under test (and any worker process it starts) is configured with; under
    the `oauth` mark, with the providers' endpoints at the local stand-ins too."""
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-" + uuid.uuid4().hex,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "FERNET_KEYS": fernet_keys,
        "SMTP_TIMEOUT_SECONDS": 10.0,
    }
    if request.node.get_closest_marker("oauth"):
        config.update(request.getfixturevalue("oauth_config"))
    return config


@pytest.fixture
def app(app_config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("LAMPLIGHT_MAIL_INSTANCE", str(tmp_path / "instance"))
    app = create_app(app_config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def make_app(app_config: dict) -> Iterator[Callable[[dict], Flask]]:
    """Another app on the test's database (other keys, another Redis...), disposed before the
    database is dropped so no pooled connection outlives it."""
    made: list[Flask] = []

    def make(config: dict) -> Flask:
        made.append(create_app(config))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def worker_env(app_config: dict, tmp_path: Path, trusted_ca: Path) -> dict[str, str]:
    """Environment for a worker (or web) subprocess configured like `app`, trusting the test
    CA whichever fixture a test happens to list first."""
    env = dict(os.environ)
    env.update(
        {
            "SSL_CERT_FILE": str(trusted_ca),
            "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": app_config["REDIS_URL"],
            "LAMPLIGHT_MAIL_KEYS": ",".join(app_config["FERNET_KEYS"]),
            "SECRET_KEY": app_config["SECRET_KEY"],
            "LAMPLIGHT_MAIL_INSTANCE": str(tmp_path / "instance"),
        }
    )
    return env


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    """The app with its context pushed, for tests that call the services directly."""
    with app.app_context():
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def browser(client: FlaskClient) -> Browser:
    return Browser(client)


@pytest.fixture
def auth(app: Flask, browser: Browser) -> AuthActions:
    return AuthActions(app, browser)


@pytest.fixture
def admin(auth: AuthActions) -> int:
    """An admin, logged in: their id."""
    return auth.login_admin()


# --- SMTP servers --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A port where connections are refused for the whole session: held by a bound socket
    that never listens, so no other process can start serving on it meanwhile."""
    with bound_socket() as sock:
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def tls_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted_ca(tls_authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the test CA the trust store, the way an admin's system would trust a real CA."""
    path = tmp_path / "test-ca.pem"
    tls_authority.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    return path


@pytest.fixture
def smtp_server(tls_authority: trustme.CA, trusted_ca: Path) -> Iterator[SMTPServer]:
    """Like Office 365: STARTTLS required before AUTH LOGIN, which is required before MAIL."""
    with serving("starttls", tls_authority, {SMTP_USER: SMTP_PASSWORD}) as server:
        yield server


@pytest.fixture
def other_smtp_server(tls_authority: trustme.CA, trusted_ca: Path) -> Iterator[SMTPServer]:
    """A second server like smtp_server: another account's, for mail that must keep flowing
    while the first one misbehaves."""
    with serving("starttls", tls_authority, {SMTP_USER: SMTP_PASSWORD}) as server:
        yield server


@pytest.fixture
def smtp_ssl_server(tls_authority: trustme.CA, trusted_ca: Path) -> Iterator[SMTPServer]:
    """Implicit TLS (port 465 style) with AUTH required."""
    with serving("ssl", tls_authority, {SMTP_USER: SMTP_PASSWORD}) as server:
        yield server


# --- OAuth 2.0: the providers' identity platforms, Graph, and SMTP with XOAUTH2 --------------


@pytest.fixture
def authority() -> Iterator:
    """Microsoft's and Google's identity platforms on 127.0.0.1 (tests/oauth_servers.py)."""
    from tests.oauth_servers import AuthorizationServer

    server = AuthorizationServer().start()
    yield server
    server.stop()


@pytest.fixture
def graph(authority) -> Iterator:
    from tests.oauth_servers import GraphServer

    server = GraphServer(authority).start()
    yield server
    server.stop()


@pytest.fixture
def xoauth2_server(tls_authority: trustme.CA, trusted_ca: Path, authority) -> Iterator[SMTPServer]:
    """Like smtp.office365.com with modern authentication: STARTTLS, then AUTH XOAUTH2."""
    from tests.oauth_servers import start_xoauth2_server

    server = start_xoauth2_server(authority, server_context(tls_authority))
    yield server
    server.stop()


@pytest.fixture
def oauth_config(authority, graph) -> dict:
    """The app's provider endpoints pointed at the local servers (CONTRACT.md's variables)."""
    from tests.oauth_servers import PUBLIC_URL

    return {
        "PUBLIC_URL": PUBLIC_URL,
        "MICROSOFT_AUTHORITY": authority.url,
        "GOOGLE_AUTH_URL": authority.google_auth_url,
        "GOOGLE_TOKEN_URL": authority.google_token_url,
        "GRAPH_URL": graph.url,
    }


@pytest.fixture
def oauth_env(oauth_config: dict) -> dict[str, str]:
    """The same, as the environment of a worker process."""
    return {
        "LAMPLIGHT_MAIL_PUBLIC_URL": oauth_config["PUBLIC_URL"],
        "LAMPLIGHT_MAIL_MICROSOFT_AUTHORITY": oauth_config["MICROSOFT_AUTHORITY"],
        "LAMPLIGHT_MAIL_GOOGLE_AUTH_URL": oauth_config["GOOGLE_AUTH_URL"],
        "LAMPLIGHT_MAIL_GOOGLE_TOKEN_URL": oauth_config["GOOGLE_TOKEN_URL"],
        "LAMPLIGHT_MAIL_GRAPH_URL": oauth_config["GRAPH_URL"],
    }
