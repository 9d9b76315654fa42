"""Redis stopped while an operator composes, started again later: every message is delivered.

The test runs its own embedded Redis so it can stop it; the shared one stays up for the others.
"""

from __future__ import annotations

import pytest

from lamplight_mail.dev import embedded_redis
from lamplight_mail.extensions import db
from lamplight_mail.models import User
from tests.factories import make_account, statuses
from tests.pages import AuthActions, Browser
from tests.workers import run_burst_worker

pytestmark = pytest.mark.slow


def test_mail_composed_while_redis_is_down_is_delivered_once_it_is_back(
    app_config, make_app, own_redis, smtp_server, worker_env, tmp_path, monkeypatch
):
    folder, url = own_redis
    monkeypatch.setenv("LAMPLIGHT_MAIL_INSTANCE", str(tmp_path / "instance"))
    app = make_app({**app_config, "REDIS_URL": url})
    browser = Browser(app.test_client())
    user_id = AuthActions(app, browser).login_operator()
    with app.app_context():
        make_account(smtp_server, owner=db.session.get(User, user_id))

    embedded_redis.stop(folder)
    people = [f"person{i}@example.org" for i in range(5)]
    response = browser.post(
        "/compose", {"recipients": "\n".join(people), "subject": "Hello", "body": "Dear friend"}
    )
    assert response.status_code == 302  # accepted all the same
    send_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert "on its way" in browser.get(response.headers["Location"]).get_data(as_text=True)

    embedded_redis.ensure_running(folder, persist=False)  # back, and empty
    run_burst_worker({**worker_env, "REDIS_URL": url})

    assert sorted(smtp_server.recorder.recipients()) == people
    with app.app_context():
        assert statuses(send_id) == {"sent": 5}
        db.session.remove()
        db.engine.dispose()
