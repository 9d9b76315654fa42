"""Issue 10, item 6: while the database cannot be reached every page answers 503 with a page
that needs no database, and the app recovers by itself when it is back. SQLite is made
unreadable (its path stops being a database file); PostgreSQL stops taking connections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lamplight_mail.extensions import db


@contextmanager
def _sqlite_unreadable(app: Flask, path: Path) -> Iterator[None]:
    # Root can read any file mode, so the path itself stops being a file: a directory there is
    # what SQLite meets when a volume is gone or mounted wrong ("unable to open database file").
    with app.app_context():
        db.engine.dispose()  # new connections only, as in a freshly started web process
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    path.mkdir()
    try:
        yield
    finally:
        path.rmdir()
        aside.rename(path)


@contextmanager
def _postgres_refusing(url: str) -> Iterator[None]:
    name = make_url(url).database
    # The server's own database (TEST_DATABASE_URL, set whenever PostgreSQL tests run).
    admin = create_engine(os.environ["TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def _database_down(app: Flask):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        return _sqlite_unreadable(app, Path(make_url(url).database))
    return _postgres_refusing(url)


def test_pages_answer_503_while_the_database_is_down_then_recover(app, auth, browser):
    auth.login_operator()
    assert browser.get("/compose").status_code == 200
    token = browser.csrf_token()

    with _database_down(app):
        for response in (
            browser.get("/compose"),  # logged in: loading the user needs the database
            browser.client.get("/login"),
            browser.client.get("/admin/users"),
            browser.client.post("/compose", data={"csrf_token": token, "subject": "x"}),
        ):
            page = response.get_data(as_text=True)
            assert response.status_code == 503, page[:500]
            assert "Lamplight Mail is temporarily unavailable" in page
            assert response.headers["Retry-After"] == "30"
            assert "Content-Security-Policy" in response.headers
        health = browser.client.get("/healthz")
        assert health.status_code == 503 and health.get_json()["db"] == "unavailable"

    # Back by itself: same process, same session, no restart.
    response = browser.get("/compose")
    assert response.status_code == 200
    assert "Olive Operator" in response.get_data(as_text=True)
    assert browser.client.get("/healthz").get_json()["db"] == "ok"
