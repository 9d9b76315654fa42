"""Extension objects, unbound until create_app binds them (no import cycles via __init__)."""

from __future__ import annotations

from pathlib import Path

import redis
from flask import Flask, current_app, request
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine, make_url

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """WAL and a busy timeout let the web process and several workers share one SQLite file."""
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    # Take over transaction control so `BEGIN IMMEDIATE` can be issued where a claim needs it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    # Execution option `sqlite_immediate=True` takes the write lock up front, which is what
    # SELECT ... FOR UPDATE SKIP LOCKED gives on PostgreSQL: no two claimers read the same rows.
    if connection.get_execution_options().get("sqlite_immediate"):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


def begin_form_writes_immediately() -> None:
    """On SQLite, a request that may write starts its transaction with the write lock.

    A deferred transaction that reads and then writes fails at once with "database is locked"
    when another process (a worker recording outcomes) committed in between: SQLite cannot turn
    an outdated read snapshot into a write, and the busy timeout does not apply. Taking the
    lock first makes the request wait its turn instead. Reads (GET) stay deferred so pages never
    queue behind workers; WAL lets them read while a worker writes.
    """
    if request.method in ("GET", "HEAD", "OPTIONS") or db.engine.dialect.name != "sqlite":
        return
    db.session.connection(execution_options={"sqlite_immediate": True})


def size_connection_pool(config: dict) -> None:
    """A worker's delivery thread holds up to two database connections at once (its claims'
    and, for a moment, its session's), and the process one more for its marks (see claims.py)
    and one for its main loop: the pool keeps room for all of them and a few to spare, so no
    thread waits on another. Connections are opened only as needed, so a web process pays
    nothing for the room."""
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return  # one shared connection (StaticPool): nothing to size
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **config["SQLALCHEMY_ENGINE_OPTIONS"],
        "pool_size": 5 + 2 * config["WORKER_CONNECTIONS"],
    }


def init_redis(app: Flask) -> None:
    app.extensions["lamplight_redis"] = None


def redis_url(app: Flask | None = None) -> str:
    """The Redis URL in force: configured, else the embedded server under the instance folder."""
    app = app or current_app
    url = app.config.get("REDIS_URL")
    if not url:
        from lamplight_mail.dev import embedded_redis

        url = embedded_redis.ensure_running(Path(app.instance_path) / "redis")
        app.config["REDIS_URL"] = url
    return url


def get_redis(app: Flask | None = None) -> redis.Redis:
    """One client (and connection pool) per app, created on first use."""
    app = app or current_app
    client = app.extensions.get("lamplight_redis")
    if client is None:
        client = redis.Redis.from_url(
            redis_url(app), socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )
        app.extensions["lamplight_redis"] = client
    return client
