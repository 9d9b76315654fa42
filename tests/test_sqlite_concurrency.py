"""Web forms keep working on SQLite while a worker process commits at the same time."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator

import pytest

from lamplight_mail.models import Role


@pytest.fixture
def busy_writer(database_url: str) -> Iterator[Callable[[], None]]:
    """Start another connection committing small writes back to back, like a worker recording
    outcomes."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has row locks; this is about SQLite's single writer")
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def write() -> None:
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=15)
        while not stop.is_set():
            connection.execute(
                "INSERT INTO settings (key, value) VALUES ('tick', '0') "
                "ON CONFLICT (key) DO UPDATE SET value = value + 1"
            )
            connection.commit()
            stop.wait(0.002)  # a worker records an outcome per SMTP exchange, not continuously
        connection.close()

    def start() -> None:
        threads.append(threading.Thread(target=write, daemon=True))
        threads[-1].start()

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


def test_saving_a_form_while_a_worker_commits_never_fails(auth, browser, busy_writer):
    auth.login_admin()
    user_id = auth.create_user("olive@charity.example", Role.OPERATOR)
    busy_writer()
    for attempt in range(30):
        response = browser.post(
            f"/admin/users/{user_id}/edit",
            {
                "email": "olive@charity.example",
                "name": f"Olive {attempt}",
                "role": "operator",
                "password": "",
            },
        )
        assert response.status_code == 302, response.get_data(as_text=True)[:300]
    assert "Olive 29" in browser.get("/admin/users").get_data(as_text=True)
