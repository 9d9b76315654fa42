"""An SMTP server that stalls, drops the connection mid-message, closes with 421, refuses the
password or refuses STARTTLS: the faulty account's mail is retried, failed with the reason or
held, as the fault deserves, while another account's mail flows through two real workers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, MessageStatus
from tests.factories import make_account, make_user
from tests.faults.support import (
    addresses,
    compose,
    lost_and_duplicated,
    message,
    received,
    recipients_with,
    wait_for_statuses,
)
from tests.smtp_servers import Recorder
from tests.workers import running_workers

pytestmark = pytest.mark.slow


FIRST = "person0@faulty.example.org"


def _inject(fault: str, recorder: Recorder) -> None:
    if fault == "stall after the final dot":
        recorder.stall_after_data(FIRST)
    elif fault == "drop mid-DATA":
        recorder.drop_in_data(FIRST)
    elif fault == "421 closing":
        recorder.reply_for(FIRST, "421 4.4.2 Connection dropped, closing")
    elif fault == "535 wrong password":
        recorder.auth_reply = "535 5.7.8 Authentication credentials invalid"
    elif fault == "STARTTLS refused":
        recorder.starttls_reply = "454 4.7.0 TLS not available due to temporary reason"


def _clear(recorder: Recorder) -> None:
    recorder.starttls_reply = None
    recorder.stalls_released.set()


FAULTS = [
    "stall after the final dot",
    "drop mid-DATA",
    "421 closing",
    "535 wrong password",
    "STARTTLS refused",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_one_accounts_faulty_server_never_stops_another_accounts_mail(
    app, smtp_server, other_smtp_server, worker_env, tmp_path, tally, fault
):
    faulty_server, healthy_server = smtp_server, other_smtp_server
    with app.app_context():
        user = make_user()
        faulty = make_account(faulty_server, owner=make_user("fay@charity.example"))
        healthy = make_account(healthy_server)
        faulty_people = addresses(10, "faulty.example.org")
        healthy_people = addresses(30, "healthy.example.org")
        _inject(fault, faulty_server.recorder)
        faulty_send = compose(user, faulty, faulty_people)
        healthy_send = compose(user, healthy, healthy_people)

        # The stalled exchange gives up after the SMTP timeout: long enough for connect,
        # STARTTLS and AUTH on a busy machine, since the stall (not a slow server) is the point;
        # and shorter than the lease, or the stalled message would be taken over meanwhile.
        settings = {"LAMPLIGHT_MAIL_SMTP_TIMEOUT": "5", "LAMPLIGHT_MAIL_LEASE_SECONDS": "10"}
        with running_workers(worker_env, tmp_path, 2, **settings):
            # The other account's mail goes while the fault lasts.
            wait_for_statuses(healthy_send, {"sent": 30}, timeout=90)
            if fault == "stall after the final dot":
                # The stalled exchange times out while the server still holds it.
                wait_for_statuses(faulty_send, {"sent": 9, "failed": 1}, timeout=90)
            _clear(faulty_server.recorder)
            if fault == "535 wrong password":
                wait_for_statuses(faulty_send, {"deferred": 10}, timeout=60)
            elif fault != "stall after the final dot":
                wait_for_statuses(faulty_send, {"sent": 10}, timeout=90)

        first = message(faulty_send, FIRST)
        if fault == "stall after the final dot":
            # Sent in full, then no answer: it may have arrived, so it is not sent again.
            assert first.status == MessageStatus.FAILED
            assert first.last_response.startswith("Outcome unknown: ")
            expected = set(healthy_people) | set(faulty_people[1:])
        elif fault == "535 wrong password":
            account = db.session.get(EmailAccount, faulty.id)
            assert "535 5.7.8" in account.paused_reason
            held = db.session.scalars(
                select(EmailAccount.paused_at).where(EmailAccount.id == healthy.id)
            ).one()
            assert held is None  # only the faulty account is paused
            assert first.attempts == 0
            expected = set(healthy_people)
        else:
            # Never accepted, so retried: one attempt lost to each refusal, then delivered.
            if fault == "STARTTLS refused":
                assert first.attempts >= 2  # refused until the test let STARTTLS through
            else:
                assert first.attempts == 2
            expected = set(healthy_people) | set(faulty_people)
            assert first.last_response.startswith("250")

        lost, duplicated = lost_and_duplicated(
            expected, [faulty_send, healthy_send], faulty_server.recorder, healthy_server.recorder
        )
        tally.add(
            f"SMTP {fault}",
            injected=1,
            messages=40,
            lost=lost,
            duplicated=duplicated,
        )
        assert set(received(faulty_server.recorder, healthy_server.recorder)) == expected
        assert recipients_with(MessageStatus.SENT, faulty_send, healthy_send) == expected
        assert (lost, duplicated) == (0, 0)
