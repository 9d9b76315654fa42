"""Worker processes killed (SIGKILL) at random points, stopped (SIGTERM) mid-batch, and sharing a
connection cap of one over a run that lasts several slot leases."""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus
from tests.factories import make_account, make_user
from tests.faults.support import (
    addresses,
    assert_given_back,
    compose,
    lost_and_duplicated,
    wait_for_statuses,
)
from tests.workers import (
    WorkerProcess,
    explained_by,
    running_workers,
    wait_until,
)

pytestmark = pytest.mark.slow

KILLS = 20


@pytest.mark.parametrize("connections", [1, 3])
def test_workers_killed_at_random_points_lose_nothing_and_resend_at_most_one_each(
    app, smtp_server, worker_env, tmp_path, tally, connections
):
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    recorder = smtp_server.recorder
    recorder.data_delay_seconds = 0.01
    people = addresses(300, "kills.example.org")
    with app.app_context():
        account = make_account(smtp_server)
        send = compose(make_user(), account, people)
        workers: list[WorkerProcess] = []
        for round_ in range(KILLS):
            # Two workers at a time: a fresh one starts, and one of them is killed once it has
            # sent a few more messages, a random moment into a message's exchange.
            workers.append(
                WorkerProcess(
                    worker_env,
                    tmp_path / f"kill-{round_}.log",
                    LAMPLIGHT_MAIL_BATCH_SIZE="20",
                    LAMPLIGHT_MAIL_WORKER_CONNECTIONS=str(connections),
                )
            )
            target = len(recorder.messages) + chance.randint(1, 6)
            with explained_by(*workers):
                wait_until(lambda target=target: len(recorder.messages) >= target, timeout=60)
            time.sleep(chance.uniform(0, 0.02))
            victim = workers.pop(chance.randrange(len(workers)))
            victim.kill()
        assert len(set(recorder.recipients())) < len(people), "all sent before the last kill"
        workers.append(WorkerProcess(worker_env, tmp_path / "last.log"))
        try:
            with explained_by(*workers):
                wait_for_statuses(send, {"sent": len(people)}, timeout=120)
        finally:
            for worker in workers:
                worker.stop()

        lost, duplicated = lost_and_duplicated(set(people), [send], recorder)
        tally.add(
            f"worker SIGKILL at random points, {connections} connection(s) a worker",
            injected=KILLS,
            messages=len(people),
            lost=lost,
            duplicated=duplicated,
        )
        assert lost == 0, f"seed {seed}"
        # Only the messages on the wire when a worker died can go again: one extra copy per
        # connection it had open (a worker process opens up to the account's cap of them, on its
        # threads). One message can take several: a kill while it is on the wire, then another
        # while its reclaimer (expired leases first) sends it again; seed 59179 did that.
        assert duplicated <= KILLS * min(connections, account.connection_cap), f"seed {seed}"


# The contract's promise, with the production lease, sweep and batch size.
PRODUCTION_TIMING = {
    "LAMPLIGHT_MAIL_LEASE_SECONDS": "30",
    "LAMPLIGHT_MAIL_SWEEP_SECONDS": "10",
    "LAMPLIGHT_MAIL_BATCH_SIZE": "100",
}


def test_a_killed_workers_mail_is_sent_within_60_seconds_behind_a_5000_message_backlog(
    app, smtp_server, worker_env, tmp_path, tally
):
    recorder = smtp_server.recorder
    # One connection at 50 messages a second: the backlog alone would take 100 s to drain.
    recorder.data_delay_seconds = 0.02
    people = addresses(5000, "backlog.example.org")
    with app.app_context():
        account = make_account(smtp_server, connection_cap=1)
        send = compose(make_user(), account, people)
        first = WorkerProcess(worker_env, tmp_path / "first.log", **PRODUCTION_TIMING)
        with explained_by(first):
            recorder.wait_for(10, timeout=60)
        first.kill()
        killed_at = time.time()
        db.session.rollback()
        stranded = set(
            db.session.scalars(
                select(Message.recipient_email).where(
                    Message.send_id == send.id, Message.status == MessageStatus.SENDING
                )
            )
        ) - set(recorder.recipients())
        assert len(stranded) > 50  # most of its batch of 100

        second = WorkerProcess(worker_env, tmp_path / "second.log", **PRODUCTION_TIMING)
        try:
            with explained_by(first, second):
                wait_until(lambda: stranded <= set(recorder.recipients()), timeout=90)
        finally:
            second.stop()

        arrivals = {item.rcpt_tos[0]: item.at for item in recorder.messages}
        reclaimed_after = max(arrivals[address] for address in stranded) - killed_at
        lost, duplicated = lost_and_duplicated(stranded, [], recorder)
        tally.add(
            f"worker SIGKILL, 5,000 behind (reclaimed in {reclaimed_after:.0f} s)",
            injected=1,
            messages=len(stranded),
            lost=lost,
            duplicated=duplicated,
        )
        assert reclaimed_after <= 60
        assert duplicated <= 1


def test_sigterm_stops_a_worker_within_10_seconds_and_gives_its_batch_back(
    app, smtp_server, worker_env, tmp_path, tally
):
    recorder = smtp_server.recorder
    recorder.data_delay_seconds = 0.3
    people = addresses(40, "stop.example.org")
    with app.app_context():
        send = compose(make_user(), make_account(smtp_server), people)
        worker = WorkerProcess(worker_env, tmp_path / "worker.log")
        with explained_by(worker):
            recorder.wait_for(3, timeout=60)
            stopped_after = worker.terminate()
        assert stopped_after <= 10
        assert_given_back(send, recorder)

        with running_workers(worker_env, tmp_path, 1):
            wait_for_statuses(send, {"sent": 40}, timeout=90)
        lost, duplicated = lost_and_duplicated(set(people), [send], recorder)
        tally.add(
            "worker SIGTERM mid-batch", injected=1, messages=40, lost=lost, duplicated=duplicated
        )
        assert (lost, duplicated) == (0, 0)


def test_a_cap_of_one_holds_for_a_run_of_several_slot_leases(
    app, smtp_server, worker_env, tmp_path, tally
):
    recorder = smtp_server.recorder
    recorder.data_delay_seconds = 0.3
    people = addresses(40, "capped.example.org")  # 12 s of sending: four 3 s slot leases
    with app.app_context():
        send = compose(make_user(), make_account(smtp_server, connection_cap=1), people)
        with running_workers(worker_env, tmp_path, 2, LAMPLIGHT_MAIL_BATCH_SIZE="5"):
            wait_for_statuses(send, {"sent": 40}, timeout=120)
        lost, duplicated = lost_and_duplicated(set(people), [send], recorder)
        over = recorder.max_concurrent_connections - 1
        tally.add(
            "cap 1, two workers, 4 slot leases",
            injected=0,
            messages=40,
            lost=lost,
            duplicated=duplicated,
            over_limit=max(0, over),
        )
        assert recorder.max_concurrent_connections == 1
        assert (lost, duplicated) == (0, 0)
