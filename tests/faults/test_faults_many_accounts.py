"""One worker process, many accounts: a server that stalls holds up only its own account's
connection, while the process goes on delivering another account's mail at its normal rate."""

from __future__ import annotations

import pytest

from lamplight_mail.models import MessageStatus
from tests.faults.support import (
    addresses,
    compose,
    lost_and_duplicated,
    recipients_with,
    wait_for_statuses,
)
from tests.outbox_support import make_account, make_user, running_workers, wait_until

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
