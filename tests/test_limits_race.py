"""Separate processes racing for one account through the shared limiter in a real Redis."""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta

import pytest

from lamplight_mail import create_app
from lamplight_mail.delivery import limits
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, Role, User, utcnow
from tests.factories import make_account, record_sent
from tests.workers import acquire_paced, acquire_until_empty, hold_connections

pytestmark = pytest.mark.slow

PROCESSES = 4
TIMEOUT = 120
spawn = multiprocessing.get_context("spawn")


@pytest.fixture
def process_config(app_config: dict) -> dict:
    return {**app_config, "DAILY_WINDOW_SECONDS": 3600, "MINUTE_WINDOW_SECONDS": 60}


@pytest.fixture
def app(process_config: dict, app):
    app.config.update(process_config)
    return app


def _start(target, *args, count: int = PROCESSES) -> list:
    processes = [spawn.Process(target=target, args=args, daemon=True) for _ in range(count)]
    for process in processes:
        process.start()
    return processes


def _join(processes: list) -> None:
    for process in processes:
        process.join(TIMEOUT)
        assert process.exitcode == 0, f"a racing process failed (exit {process.exitcode})"


def _race_rounds(process_config, account_id, rounds, messages, before_round):
    """`rounds` times: call before_round(n), then let PROCESSES drain `messages` due messages.
    Returns the results per round: lists of (allowed, now ms, not-before ms)."""
    work, results = spawn.Queue(), spawn.Queue()
    barrier = spawn.Barrier(PROCESSES + 1, timeout=TIMEOUT)
    processes = _start(
        acquire_until_empty, process_config, account_id, work, results, rounds, barrier
    )
    by_round: dict[int, list] = {n: [] for n in range(rounds)}
    for number in range(rounds):
        before_round(number)
        for _ in range(messages):
            work.put(1)
        for _ in range(PROCESSES):
            work.put(None)
        barrier.wait()  # go
        barrier.wait()  # all drained
    for _ in range(rounds * messages):
        number, *result = results.get(timeout=TIMEOUT)
        by_round[number].append(result)
    _join(processes)
    return by_round


def test_four_processes_never_send_more_than_the_daily_limit(app, process_config, redis_client):
    with app.app_context():
        account_id = make_account(daily_limit=20).id
        db.session.commit()
    keys = list(limits._keys(account_id).values())

    # Each round starts with the limiter's keys gone, so the processes also race to rebuild.
    by_round = _race_rounds(
        process_config, account_id, 20, 50, lambda _: redis_client.delete(*keys)
    )

    for results in by_round.values():
        allowed = [now for ok, now, _ in results if ok]
        refused = [not_before for ok, _, not_before in results if not ok]
        assert (len(allowed), len(refused)) == (20, 30)
        # Every refusal names the moment the first send of the round leaves the window.
        assert set(refused) == {min(allowed) + 3600 * 1000}


def test_redis_flushed_mid_day_with_processes_racing_never_over_sends(
    app, process_config, auth, redis_client
):
    with app.app_context():
        user = db.session.get(User, auth.create_user("ada@charity.example", Role.ADMIN))
        account = make_account(daily_limit=20)
        oldest = utcnow() - timedelta(minutes=30)
        record_sent(user, account, 8, oldest)
        db.session.commit()
        account_id = account.id

    by_round = _race_rounds(process_config, account_id, 5, 20, lambda _: redis_client.flushdb())

    leaves_at = limits._to_ms(oldest) + 3600 * 1000
    for results in by_round.values():
        assert sum(ok for ok, _, _ in results) == 12
        assert {not_before for ok, _, not_before in results if not ok} == {leaves_at}


def test_per_minute_pacing_never_puts_more_than_the_limit_in_any_window(
    app, process_config, redis_client
):
    # A one-second "minute" keeps the test short; the rule is the same.
    config = {**process_config, "MINUTE_WINDOW_SECONDS": 1}
    with app.app_context():
        account_id = make_account(per_minute_limit=30).id
        db.session.commit()
    work, results = spawn.Queue(), spawn.Queue()
    for _ in range(100):
        work.put(1)
    for _ in range(PROCESSES):
        work.put(None)
    processes = _start(acquire_paced, config, account_id, work, results)
    sent = sorted(results.get(timeout=TIMEOUT) for _ in range(100))
    _join(processes)

    busiest = max(sum(1 for t in sent if start <= t < start + 1000) for start in sent)
    assert busiest == 30
    # Deferred, not failed: all 100 went, the last no earlier than three windows after the first.
    assert sent[-1] - sent[0] >= 3 * 1000


def test_connection_cap_holds_across_six_processes(app, process_config, redis_client):
    with app.app_context():
        account_id = make_account(connection_cap=3).id
        db.session.commit()
    state = spawn.Array("i", [0, 0])  # held now, most held at once
    lock = spawn.Lock()
    processes = _start(hold_connections, process_config, account_id, 25, state, lock, count=6)
    _join(processes)
    assert state[1] == 3
    assert state[0] == 0


def _race_places(body, config: dict, account_id: int, *args) -> list:
    """Two processes running `body`; everything they put on the results queue."""
    results = spawn.Queue()
    processes = [
        spawn.Process(target=body, args=(config, account_id, results, *args), daemon=True)
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    found = []
    for _ in processes:
        while (item := results.get(timeout=TIMEOUT)) is not None:
            found.append(item)
    for process in processes:
        process.join(TIMEOUT)
        assert process.exitcode == 0, f"a racing process failed (exit {process.exitcode})"
    return found


def test_two_processes_taking_places_never_pass_the_daily_limit(app, process_config, redis_client):
    with app.app_context():
        account = make_account(daily_limit=50, per_minute_limit=100_000)
        db.session.commit()

        taken = _race_places(take_until_refused, process_config, account.id)

        assert len(taken) == 50  # every place a message went with, from both processes
        assert len(set(taken)) == 50
        assert limits.usage(account).sent_in_window == 50


def test_places_keep_every_minute_window_to_the_per_minute_limit(app, process_config, redis_client):
    # A one-second "minute" keeps the test short; the rule is the same.
    config = {**process_config, "MINUTE_WINDOW_SECONDS": 1}
    with app.app_context():
        account_id = make_account(per_minute_limit=10).id
        db.session.commit()

    went = sorted(_race_places(take_paced, config, account_id, 30))

    assert len(went) == 2 * 30
    busiest = max(sum(1 for t in went if start <= t < start + 1.0) for start in went)
    assert busiest <= 10
    # Paced, not refused for good: the 60 went over about six windows.
    assert went[-1] - went[0] >= 4.0


# --- Bodies of processes taking places (spawned: they import this module) -----------------


def _account(config: dict, account_id: int) -> EmailAccount:
    account = db.session.get(EmailAccount, account_id)
    db.session.expunge(account)
    db.session.remove()
    return account


def take_until_refused(config: dict, account_id: int, results) -> None:
    """Reserve runs of 7 places and take each, until the daily window refuses; report each
    place taken, then None."""
    app = create_app(config)
    with app.app_context():
        account = _account(config, account_id)
        while (decision := limits.reserve(account, 7)).allowed:
            while (place := decision.places.take()) is not None:
                results.put(place.token)
        assert decision.refusal == limits.Refusal.DAILY
        results.put(None)


def take_paced(config: dict, account_id: int, results, messages: int) -> None:
    """Send `messages` messages through runs of 4 places, waiting for the limiter's moment
    when refused; report the moment (this machine's clock) each went, then None."""
    app = create_app(config)
    with app.app_context():
        account = _account(config, account_id)
        sent = 0
        while sent < messages:
            decision = limits.reserve(account, min(4, messages - sent))
            if not decision.allowed:
                time.sleep(max(0.0, (decision.not_before - decision.now).total_seconds()))
                continue
            while decision.places.take() is not None:
                results.put(time.time())
                sent += 1
            decision.places.give_back()
        results.put(None)
