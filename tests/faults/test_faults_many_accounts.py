"""One worker process, many accounts: a server that stalls holds up only its own account's
connection, while the process goes on delivering another account's mail at its normal rate; and
SIGTERM stops every connection thread in time, each message on the wire finished."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from lamplight_mail.models import MessageStatus
from tests.factories import SMTP_PASSWORD, SMTP_USER, make_account, make_user
from tests.faults.support import (
    addresses,
    assert_given_back,
    compose,
    lost_and_duplicated,
    recipients_with,
    wait_for_statuses,
)
from tests.smtp_servers import serving
from tests.workers import WorkerProcess, explained_by, running_workers, wait_until

pytestmark = pytest.mark.slow


def test_a_stalled_server_slows_only_its_own_account_in_one_worker_process(
    app, smtp_server, other_smtp_server, worker_env, tmp_path, tally
):
    stalled_server, healthy_server = smtp_server, other_smtp_server
    # The stall lasts until the test ends it: the SMTP timeout is far longer, so nothing the
    # worker does can end it first.
    settings = {
        "LAMPLIGHT_MAIL_SMTP_TIMEOUT": "600",
        "LAMPLIGHT_MAIL_LEASE_SECONDS": "900",
        "LAMPLIGHT_MAIL_WORKER_CONNECTIONS": "4",
    }
    with app.app_context():
        user = make_user()
        stalled = make_account(stalled_server, owner=make_user("fay@charity.example"))
        healthy = make_account(healthy_server)
        stalled_people = addresses(10, "stalled.example.org")
        healthy_people = addresses(30, "healthy.example.org")
        stalled_server.recorder.hold()  # every message waits after its final dot, unanswered
        stalled_send = compose(user, stalled, stalled_people)

        with running_workers(worker_env, tmp_path, 1, **settings):
            # The one worker process is in the middle of the stalled account's mail first.
            wait_until(lambda: stalled_server.recorder.open_connections() >= 1, timeout=60)
            wait_until(lambda: recipients_with(MessageStatus.SENDING, stalled_send), timeout=60)
            healthy_send = compose(user, healthy, healthy_people)
            # The other account's mail all goes while the stall lasts.
            wait_for_statuses(healthy_send, {"sent": 30}, timeout=90)
            assert len(healthy_server.recorder.recipients()) == 30
            assert stalled_server.recorder.recipients() == []  # still stalled meanwhile
            assert stalled_server.recorder.open_connections() >= 1

            stalled_server.recorder.release()
            wait_for_statuses(stalled_send, {"sent": 10}, timeout=90)

        lost, duplicated = lost_and_duplicated(
            set(stalled_people) | set(healthy_people),
            [stalled_send, healthy_send],
            stalled_server.recorder,
            healthy_server.recorder,
        )
        tally.add(
            "SMTP stall, one worker process, 2 accounts",
            injected=1,
            messages=40,
            lost=lost,
            duplicated=duplicated,
        )
        assert (lost, duplicated) == (0, 0)


def test_sigterm_stops_every_connection_thread_within_10_seconds_and_gives_the_rest_back(
    app, tls_authority, trusted_ca, worker_env, tmp_path, tally
):
    with ExitStack() as stack, app.app_context():
        servers = [
            stack.enter_context(serving("starttls", tls_authority, {SMTP_USER: SMTP_PASSWORD}))
            for _ in range(3)
        ]
        user = make_user()
        sends, people = [], []
        for number, server in enumerate(servers):
            server.recorder.data_delay_seconds = 0.3
            account = make_account(server, owner=make_user(f"operator{number}@charity.example"))
            people.append(addresses(20, f"account{number}.example.org"))
            sends.append(compose(user, account, people[-1]))

        worker = WorkerProcess(worker_env, tmp_path / "worker.log")
        with explained_by(worker):
            # One process, three accounts' connections in flight at once.
            for server in servers:
                server.recorder.wait_for(2, timeout=60)
            stopped_after = worker.terminate()
        assert stopped_after <= 10

        # Each thread's message on the wire was finished and marked; the rest went back.
        for send, server in zip(sends, servers, strict=True):
            assert_given_back(send, server.recorder)

        with running_workers(worker_env, tmp_path, 1):
            for send in sends:
                wait_for_statuses(send, {"sent": 20}, timeout=90)
        lost, duplicated = lost_and_duplicated(
            {p for group in people for p in group}, sends, *(s.recorder for s in servers)
        )
        tally.add(
            "worker SIGTERM, 3 accounts' connections in flight",
            injected=1,
            messages=60,
            lost=lost,
            duplicated=duplicated,
        )
        assert (lost, duplicated) == (0, 0)
