"""Issue 10, item 10: first-run setup is atomic. Concurrent posts to /setup (three made three
admins on PostgreSQL) create exactly one admin; the others get the 404 of a finished setup."""

from __future__ import annotations

import threading

from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import Role, User
from tests.pages import Browser

CONCURRENT = 6


def test_concurrent_setups_make_exactly_one_admin(app):
    browsers = [Browser(app.test_client()) for _ in range(CONCURRENT)]
    tokens = [browser.csrf_token() for browser in browsers]  # each has the setup form open
    start = threading.Barrier(CONCURRENT)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def post(number: int) -> None:
        try:
            start.wait(timeout=60)
            response = browsers[number].client.post(
                "/setup",
                data={
                    "csrf_token": tokens[number],
                    "email": f"admin{number}@charity.example",
                    "name": f"Admin {number}",
                    "password": "a long enough password",
                    "confirm": "a long enough password",
                },
            )
            statuses.append(response.status_code)
        except BaseException as error:  # reported below, in the test's own thread
            errors.append(error)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(statuses) == [302] + [404] * (CONCURRENT - 1)
    with app.app_context():
        admins = db.session.scalars(select(User).where(User.role == Role.ADMIN)).all()
        assert len(admins) == 1
        assert db.session.scalars(select(User)).all() == admins
