"""Growing by processes: four `python worker.py` processes, each with several connection
threads, over four accounts on their own servers (SQLite and PostgreSQL): nothing lost, nothing
sent twice, and every account's connection cap, per-minute pacing and daily limit held. And the
setting that sizes a worker's threads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from lamplight_mail.config import ConfigError, load_config
from lamplight_mail.extensions import db, size_connection_pool
from tests.factories import SMTP_PASSWORD, SMTP_USER, make_account, make_user, statuses
from tests.faults.support import addresses, compose
from tests.smtp_servers import SMTPServer, serving
from tests.test_worker_limits import most_reserved_within
from tests.workers import running_workers, wait_until

pytestmark = pytest.mark.slow

ACCOUNTS = 4
DAILY = 40
PER_WINDOW = 15
WINDOW_SECONDS = 4
CAP = 2
COMPOSED = 50  # per account: 40 go within the daily limit, 10 wait for tomorrow


@pytest.fixture
def servers(tls_authority, trusted_ca) -> Iterator[list[SMTPServer]]:
    """One server per account, like smtp_server: each counts its own account's connections."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(serving("starttls", tls_authority, {SMTP_USER: SMTP_PASSWORD}))
            for _ in range(ACCOUNTS)
        ]


def test_four_workers_over_four_accounts_lose_nothing_send_nothing_twice_exceed_no_limit(
    app, servers, worker_env, tmp_path
):
    settings = {
        "LAMPLIGHT_MAIL_WORKER_CONNECTIONS": "4",
        "LAMPLIGHT_MAIL_DAILY_WINDOW_SECONDS": "3600",
        "LAMPLIGHT_MAIL_MINUTE_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "LAMPLIGHT_MAIL_BATCH_SIZE": "5",  # small batches: the accounts' connections interleave
        # Paced mail goes through its scheduled job, not the sweep.
        "LAMPLIGHT_MAIL_SWEEP_SECONDS": "120",
    }
    with app.app_context():
        user = make_user("olive@charity.example")
        sends = []
        for number, server in enumerate(servers):
            account = make_account(
                server, owner=make_user(f"operator{number}@charity.example"), connection_cap=CAP
            )
            account.daily_limit, account.per_minute_limit = DAILY, PER_WINDOW
            db.session.commit()
            sends.append(compose(user, account, addresses(COMPOSED, f"account{number}.example")))

        with running_workers(worker_env, tmp_path, 4, **settings):
            for send in sends:
                wait_until(
                    lambda send=send: (
                        statuses(send.id) == {"sent": DAILY, "deferred": COMPOSED - DAILY}
                    ),
                    timeout=120,
                )

    for number, server in enumerate(servers):
        received = Counter(server.recorder.recipients())
        assert len(received) == DAILY, f"account {number}: lost"
        assert max(received.values()) == 1, f"account {number}: sent twice"
        assert all(rcpt.endswith(f"@account{number}.example") for rcpt in received)
        assert server.recorder.max_concurrent_connections <= CAP, f"account {number}: cap"
        messages = server.recorder.messages
        assert most_reserved_within(messages, WINDOW_SECONDS) <= PER_WINDOW, f"account {number}"
    # The pacing bound can be seen to bite: 40 messages needed several windows.
    assert any(
        most_reserved_within(server.recorder.messages, 3 * WINDOW_SECONDS) > PER_WINDOW
        for server in servers
    )


@pytest.mark.parametrize("value", ["0", "-2", "many", ""])
def test_a_worker_connections_setting_that_is_not_a_positive_number_stops_start_up(tmp_path, value):
    with pytest.raises(ConfigError, match="LAMPLIGHT_MAIL_WORKER_CONNECTIONS must be"):
        load_config(str(tmp_path), {"LAMPLIGHT_MAIL_WORKER_CONNECTIONS": value})


def test_the_database_pool_has_room_for_every_connection_thread(tmp_path):
    config = load_config(str(tmp_path), {"LAMPLIGHT_MAIL_WORKER_CONNECTIONS": "8"})
    config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'x.sqlite'}"
    size_connection_pool(config)
    # Two for each thread at once (its claims and its session), the marks' and the main loop's.
    assert config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] >= 2 * 8 + 2
