"""Redis stopped mid-send and started again empty, PostgreSQL backends killed mid-send: nothing
lost, nothing sent twice or over the limit, and the workers carry on by themselves."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, select, text

from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus
from tests.factories import make_account, make_user
from tests.faults.support import (
    addresses,
    compose,
    lost_and_duplicated,
    received,
    recipients_with,
    wait_for_statuses,
)
from tests.workers import running_workers, wait_until

pytestmark = pytest.mark.slow

HOUR = 3600


def test_redis_stopped_mid_send_and_restarted_empty(
    app, smtp_server, worker_env, tmp_path, tally, redis_server
):
    recorder = smtp_server.recorder
    recorder.data_delay_seconds = 0.02
    limit = 60
    people = addresses(120, "redis.example.org")
    settings = {"LAMPLIGHT_MAIL_DAILY_WINDOW_SECONDS": str(HOUR), "LAMPLIGHT_MAIL_BATCH_SIZE": "10"}
    with app.app_context():
        account = make_account(smtp_server)
        account.daily_limit = limit
        send = compose(make_user(), account, people)
        with running_workers(worker_env, tmp_path, 2, **settings) as workers:
            recorder.wait_for(15, timeout=60)
            redis_server.stop()
            time.sleep(3)  # the workers meet the outage mid-batch
            redis_server.start()  # empty: the limiter's windows and every job are gone
            wait_for_statuses(send, {"sent": limit, "deferred": len(people) - limit}, timeout=90)
            # Both ride it out: neither exited.
            assert [worker.process.poll() for worker in workers] == [None, None]

        sent = recipients_with(MessageStatus.SENT, send)
        lost, duplicated = lost_and_duplicated(sent, [send], recorder)
        over = max(0, len(received(recorder)) - limit)
        tally.add(
            "Redis stopped mid-send, restarted empty",
            injected=1,
            messages=len(people),
            lost=lost,
            duplicated=duplicated,
            over_limit=over,
        )
        assert (lost, duplicated, over) == (0, 0, 0)


def test_postgresql_connections_killed_mid_send(
    app, database_url, smtp_server, worker_env, tmp_path, tally
):
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL fault: runs with TEST_DATABASE_URL")
    recorder = smtp_server.recorder
    recorder.data_delay_seconds = 0.01
    people = addresses(200, "postgres.example.org")
    # Killing this test database's backends (and no other) is what a restart does to the
    # workers' connections, without disturbing anyone else's databases on the server.
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    kill = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    kills = 0
    with app.app_context():
        send = compose(make_user(), make_account(smtp_server), people)
        try:
            with running_workers(
                worker_env, tmp_path, 2, LAMPLIGHT_MAIL_BATCH_SIZE="20"
            ) as workers:
                for at in (20, 70, 120):
                    recorder.wait_for(at, timeout=60)
                    # The test's own connections are let go first: only the workers' are cut.
                    db.session.remove()
                    db.engine.dispose()
                    with admin.connect() as connection:
                        kills += connection.scalar(kill)
                wait_for_statuses(send, {"sent": len(people)}, timeout=120)
                assert [worker.process.poll() for worker in workers] == [None, None]
        finally:
            admin.dispose()

        lost, duplicated = lost_and_duplicated(set(people), [send], recorder)
        tally.add(
            "PostgreSQL backends killed mid-send (x3)",
            injected=kills,
            messages=len(people),
            lost=lost,
            duplicated=duplicated,
        )
        assert kills >= 3
        assert (lost, duplicated) == (0, 0)


def test_a_subject_that_splits_lines_fails_its_send_alone(
    app, smtp_server, worker_env, tmp_path, tally
):
    """U+2028 in a subject (put in the database directly, past the compose form): the email
    package cannot fold it into a header. Its messages fail with the reason; everything else on
    the account, before and after it in the queue, is delivered."""
    recorder = smtp_server.recorder
    with app.app_context():
        user, account = make_user(), make_account(smtp_server)
        before = compose(user, account, addresses(5, "before.example.org"))
        bad = compose(user, account, addresses(5, "bad.example.org"))
        bad.subject = "Spring appeal\u2028Bcc: everyone@example.org"
        db.session.commit()
        after = compose(user, account, addresses(5, "after.example.org"))
        with running_workers(worker_env, tmp_path, 1):
            wait_for_statuses(bad, {"failed": 5}, timeout=60)
            wait_for_statuses(before, {"sent": 5}, timeout=60)
            wait_for_statuses(after, {"sent": 5}, timeout=60)

        db.session.rollback()
        reasons = set(
            db.session.scalars(select(Message.last_response).where(Message.send_id == bad.id))
        )
        assert reasons == {
            "The message could not be built: a line break (U+2028) is not allowed in a mail header"
        }
        expected = recipients_with(MessageStatus.SENT, before, after)
        lost, duplicated = lost_and_duplicated(expected, [before, after], recorder)
        tally.add(
            "U+2028 in a subject",
            injected=1,
            messages=15,
            lost=lost,
            duplicated=duplicated,
        )
        assert not any(address.endswith("@bad.example.org") for address in recorder.recipients())
        assert len(expected) == 10
        assert (lost, duplicated) == (0, 0)
        # Nothing left behind for a later claim to trip over.
        wait_until(lambda: not recipients_with(MessageStatus.SENDING, before, bad, after))
