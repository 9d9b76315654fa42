"""The per-account limiter against a real Redis: windows, pacing, reservations, holds,
connection slots and the rebuild after Redis loses its data."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from lamplight_mail import providers
from lamplight_mail.delivery import limits
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import MessageStatus, Role, SendStatus, User, utcnow
from tests.factories import make_account, make_send, people, record_sent

HOUR = 3600


@pytest.fixture
def admin_id(app, auth) -> int:
    return auth.create_user("admin@charity.example", Role.ADMIN, "Ada Admin")


def _windows(app, daily: int = HOUR, minute: int = 60) -> None:
    app.config.update(DAILY_WINDOW_SECONDS=daily, MINUTE_WINDOW_SECONDS=minute)


def _redis_now():
    seconds, micros = get_redis().time()
    return limits._to_datetime(seconds * 1000 + micros // 1000)


def _wait_for(moment) -> None:
    """Sleep until Redis's clock has reached `moment`."""
    while (left := (moment - _redis_now()).total_seconds()) > 0:
        time.sleep(left + 0.01)


def test_counts_every_recipient_and_holds_back_the_reserve(ctx):
    _windows(ctx)
    account = make_account(daily_limit=10, reserve_percent=20)  # 8 may go, 2 kept for Outlook
    assert limits.allowance(account) == 8

    assert limits.acquire(account, recipients=3).allowed
    assert limits.acquire(account, recipients=5).allowed
    refused = limits.acquire(account)
    assert not refused.allowed
    assert refused.refusal == limits.Refusal.DAILY

    too_big = limits.acquire(account, recipients=9)
    assert (too_big.allowed, too_big.refusal, too_big.not_before) == (
        False,
        limits.Refusal.TOO_MANY_RECIPIENTS,
        None,
    )


def test_refund_gives_back_room_for_a_message_the_server_refused(ctx):
    _windows(ctx)
    account = make_account(daily_limit=2)
    first = limits.acquire(account)
    assert limits.acquire(account).allowed
    assert not limits.acquire(account).allowed

    limits.refund(first.reservation)

    assert limits.acquire(account).allowed
    assert not limits.acquire(account).allowed


@pytest.mark.slow
def test_the_daily_window_rolls_one_entry_at_a_time(ctx):
    # A six-second "day": entries leave exactly one window after they were counted.
    _windows(ctx, daily=6)
    account = make_account(daily_limit=3)
    first = limits.acquire(account)
    _wait_for(first.now + timedelta(seconds=1))
    second, third = limits.acquire(account), limits.acquire(account)
    assert first.allowed and second.allowed and third.allowed

    refused = limits.acquire(account)
    assert refused.refusal == limits.Refusal.DAILY
    assert refused.not_before == first.now + timedelta(seconds=6)

    _wait_for(refused.not_before)
    fourth = limits.acquire(account)
    assert fourth.allowed
    # Only the first entry left: the window is full again until the second one leaves.
    refused = limits.acquire(account)
    assert refused.refusal == limits.Refusal.DAILY
    assert refused.not_before == second.now + timedelta(seconds=6)


def test_a_full_minute_defers_to_the_moment_its_oldest_message_leaves(ctx):
    _windows(ctx, minute=60)
    account = make_account(per_minute_limit=2)
    first = limits.acquire(account)
    assert limits.acquire(account).allowed

    refused = limits.acquire(account)
    assert refused.refusal == limits.Refusal.MINUTE
    assert refused.not_before == first.now + timedelta(seconds=60)


def test_usage_reports_the_window_for_the_dashboard(ctx):
    _windows(ctx)
    account = make_account(daily_limit=100, per_minute_limit=30, reserve_percent=10)
    first = limits.acquire(account, recipients=2)
    limits.acquire(account)

    figures = limits.usage(account)
    assert figures.sent_in_window == 3
    assert figures.sent_last_minute == 2  # messages, not recipients
    assert (figures.daily_limit, figures.allowance, figures.remaining) == (100, 90, 87)
    assert figures.next_free_at == first.now + timedelta(hours=1)
    assert figures.next_free_count == 3
    assert figures.held_until is None


@pytest.mark.parametrize(
    ("code", "answer", "hold"),
    [
        (432, "4.3.2 Concurrent connections limit exceeded", 60),
        (421, "4.7.0 Temporary rate limit exceeded, try again later", 60),
        (550, "5.7.233 Message rejected: tenant external recipient rate limit", 3600),
        (554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException", None),
        (550, "5.4.5 Daily user sending limit exceeded", None),
        (450, "4.2.1 The user you are trying to contact is receiving mail at a rate", False),
        (550, "5.1.1 User unknown", False),
        (535, "5.7.3 Authentication unsuccessful", False),
    ],
)
def test_provider_quota_and_rate_answers_are_recognised(code, answer, hold):
    rule = providers.provider_limit(code, answer)
    if hold is False:
        assert rule is None
    else:
        assert rule is not None and rule.hold_seconds == hold


def test_a_rate_answer_holds_the_account_instead_of_failing_its_mail(ctx):
    _windows(ctx)
    account = make_account()
    assert limits.hold_for_answer(account, 550, "5.1.1 User unknown") is None
    assert limits.acquire(account).allowed

    until = limits.hold_for_answer(account, 432, "4.3.2 Concurrent connections limit exceeded")
    held = limits.acquire(account)
    assert (held.refusal, held.not_before) == (limits.Refusal.HELD, until)
    assert until - held.now <= timedelta(seconds=60)
    assert limits.usage(account).held_until == until
    # A shorter hold never cuts a longer one short.
    assert limits.slow_down(account, 5) == until


def test_a_quota_answer_holds_until_our_oldest_sends_leave_the_window(ctx):
    _windows(ctx, daily=4 * HOUR)
    account = make_account()
    first = limits.acquire(account)
    until = limits.hold_for_answer(
        account, 554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
    )
    assert until >= first.now + timedelta(hours=4)
    assert until - first.now <= timedelta(hours=4, seconds=2)


def test_a_quota_answer_with_nothing_of_ours_in_the_window_probes_again_in_an_hour(ctx):
    _windows(ctx)
    account = make_account()
    until = limits.hold_for_answer(account, 550, "5.4.5 Daily user sending limit exceeded")
    now = _redis_now()
    assert timedelta(minutes=59) < until - now <= timedelta(hours=1)


def test_redis_flushed_mid_window_rebuilds_from_the_sent_log_before_allowing_anything(
    ctx, admin_id, redis_client
):
    _windows(ctx)
    user = db.session.get(User, admin_id)
    account = make_account(daily_limit=20)
    oldest = utcnow() - timedelta(minutes=50)
    record_sent(user, account, 8, oldest)
    record_sent(user, account, 4, utcnow() - timedelta(minutes=5))
    record_sent(user, account, 30, utcnow() - timedelta(hours=2))  # left the window
    # A claimed batch when Redis went: a connection may hold places reserved ahead for up to
    # limits.PLACES_AHEAD of its claimed messages, lost with Redis, so all five (fewer than
    # cap 3 x PLACES_AHEAD) count as sent.
    make_send(user, account, people(5), message_status=MessageStatus.SENDING)
    db.session.commit()
    assert limits.acquire(account).allowed  # windows built, one reserved

    redis_client.flushdb()

    decisions = [limits.acquire(account) for _ in range(10)]
    assert sum(d.allowed for d in decisions) == 20 - 12 - 5
    refused = [d for d in decisions if not d.allowed]
    assert {d.not_before for d in refused} == {
        limits._to_datetime(limits._to_ms(oldest) + HOUR * 1000)
    }
    assert limits.usage(account).sent_in_window == 20


def test_while_another_worker_rebuilds_the_others_decline(ctx, admin_id, redis_client, monkeypatch):
    _windows(ctx)
    monkeypatch.setattr(limits, "REBUILD_WAIT_SECONDS", 0.2)
    account = make_account(daily_limit=20)
    db.session.commit()
    redis_client.set(limits._keys(account.id)["rebuild"], "another worker", ex=30)

    declined = limits.acquire(account)
    assert (declined.allowed, declined.refusal) == (False, limits.Refusal.REBUILDING)
    assert declined.not_before > declined.now

    redis_client.delete(limits._keys(account.id)["rebuild"])  # that worker died: lock gone
    assert limits.acquire(account).allowed


def test_a_dead_workers_connection_slot_lapses(ctx):
    _windows(ctx)
    account = make_account(connection_cap=1)
    dead = limits.ConnectionSlot(get_redis(), account, lease_seconds=1)
    assert dead.renew()  # taken, never released
    with limits.connection_slot(account) as slot:
        assert slot is None
    assert limits.open_connections(account) == 1

    deadline = time.monotonic() + 30
    while True:
        with limits.connection_slot(account, lease_seconds=30) as slot:
            if slot is not None:
                assert slot.renew()
                assert not dead.renew()  # its slot went to the live connection
                break
        assert time.monotonic() < deadline, "the dead worker's slot never lapsed"
        time.sleep(0.1)
    assert limits.open_connections(account) == 0


def test_finish_estimate_spans_as_many_windows_as_needed(ctx):
    _windows(ctx)
    account = make_account(daily_limit=10, per_minute_limit=1_000)
    before = _redis_now()
    finish = limits.estimate_finish(account, 25, ahead=0)
    after = _redis_now()
    # 10 now, 10 once those leave the window, the last 5 a window later.
    assert before + timedelta(hours=2) <= finish <= after + timedelta(hours=2)


def test_finish_estimate_follows_the_per_minute_pace(ctx):
    _windows(ctx)
    account = make_account(daily_limit=1_000, per_minute_limit=30)
    before = _redis_now()
    finish = limits.estimate_finish(account, 100, ahead=0)
    after = _redis_now()
    assert before + timedelta(minutes=3) <= finish <= after + timedelta(minutes=3)


def test_flag_reason_explains_what_the_account_can_send(ctx, admin_id):
    _windows(ctx)
    user = db.session.get(User, admin_id)
    account = make_account(daily_limit=100, reserve_percent=10)  # 90 a day
    db.session.commit()

    whole = limits.flag_reason(account, 91)
    assert "more than the account can send in a whole day" in whole
    assert "MailChimp" in whole and "/help/" not in whole  # the pages link it, not bare text
    assert "10 of its 100 kept free" in whole

    record_sent(user, account, 40)
    make_send(user, account, people(20))  # released earlier, still waiting to go
    make_send(user, account, people(80, "held.example"), status=SendStatus.FLAGGED)
    db.session.commit()
    assert limits.flag_reason(account, 30) is None
    over = limits.flag_reason(account, 31)
    assert "can send only 30 more right now" in over

    limits.set_flag_threshold(25)
    db.session.commit()
    assert limits.flag_reason(account, 25) is None
    assert "over the 25 an admin set" in limits.flag_reason(account, 26)
    limits.set_flag_threshold(None)
    db.session.commit()
    assert limits.flag_threshold() is None
    assert limits.flag_reason(account, 26) is None


# --- Places reserved ahead (limits.reserve: one round trip for a run of messages) ----------


def test_places_not_taken_go_back(ctx):
    _windows(ctx)
    account = make_account(daily_limit=100, per_minute_limit=100)
    decision = limits.reserve(account, 10)
    assert decision.allowed
    places = decision.places
    assert places.count == 10
    assert limits.usage(account).sent_in_window == 10  # counted until given back

    for _ in range(3):
        assert places.take() is not None
    places.give_back()

    figures = limits.usage(account)
    assert (figures.sent_in_window, figures.sent_last_minute) == (3, 3)
    assert places.take() is None  # given back: none left to take


def test_a_run_of_places_is_cut_to_the_room_in_the_windows(ctx):
    _windows(ctx)
    account = make_account(daily_limit=100, per_minute_limit=4)
    assert limits.reserve(account, 10).places.count == 4
    refused = limits.reserve(account, 10)
    assert (refused.allowed, refused.refusal) == (False, limits.Refusal.MINUTE)
    # Counted at the latest moment a place could be used: free a minute after that.
    assert refused.not_before - refused.now >= timedelta(seconds=60)


def test_a_place_not_taken_in_time_is_never_used(ctx, monkeypatch):
    _windows(ctx)
    monkeypatch.setattr(limits, "PLACES_SECONDS", 0.05)
    account = make_account(daily_limit=100)
    places = limits.reserve(account, 5).places
    assert places.take() is not None
    time.sleep(0.1)
    assert places.left == 0
    assert places.take() is None
    places.give_back()
    assert limits.usage(account).sent_in_window == 1
