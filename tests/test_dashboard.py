"""/dashboard: the figures equal the rows in the database, the gauges change colour at the
thresholds, the history chart is drawn from the rollups, the queue panel reads RQ."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest
from rq import Worker

from lamplight_mail import org_time
from lamplight_mail.delivery import outbox, rollups
from lamplight_mail.extensions import db
from lamplight_mail.models import AuthMethod, MessageStatus, SendStatus, utcnow
from lamplight_mail.reporting import usage
from tests.factories import add_daily, add_messages, make_account, make_send, make_user
from tests.pages import definitions, section, text


def _stamp(moment) -> str:
    return f'datetime="{moment.isoformat(timespec="seconds")}Z"'


def _card(browser, account_id: int, url: str = "/dashboard") -> str:
    response = browser.get(url)
    assert response.status_code == 200
    return section(response.get_data(as_text=True), f"account-{account_id}")


def test_card_figures_equal_the_rows_in_the_window(app, browser, admin):
    # A roomy "minute": a slow, shared machine cannot push the recent rows out of it.
    app.config["MINUTE_WINDOW_SECONDS"] = 600
    now = utcnow()
    with app.app_context():
        olive = make_user("olive@charity.example", name="Olive Operator")
        make_account(daily_limit=1000)
        account = make_account(owner=olive, daily_limit=200, per_minute_limit=30)
        send = make_send(olive, account)
        add_messages(send, 37, MessageStatus.SENT, sent_at=now - timedelta(hours=3))
        add_messages(send, 5, MessageStatus.SENT, sent_at=now - timedelta(minutes=2))
        add_messages(send, 20, MessageStatus.SENT, sent_at=now - timedelta(hours=25))
        add_messages(send, 3, MessageStatus.QUEUED)
        add_messages(send, 2, MessageStatus.PENDING)
        add_messages(send, 1, MessageStatus.SENDING)
        add_messages(send, 4, MessageStatus.DEFERRED, due_at=now + timedelta(minutes=10))
        add_messages(send, 2, MessageStatus.DEFERRED, due_at=now + timedelta(minutes=40))
        add_messages(send, 6, MessageStatus.FAILED, updated_at=now - timedelta(hours=2))
        add_messages(send, 2, MessageStatus.FAILED, updated_at=now - timedelta(hours=30))
        for _ in range(2):
            held = make_send(olive, account, status=SendStatus.FLAGGED)
            add_messages(held, 10, MessageStatus.PENDING)  # held: not queued
        account_id = account.id
        db.session.commit()

    card = _card(browser, account_id)
    figures = definitions(card)
    assert "Olive Operator (olive@charity.example)" in text(card)
    # The limiter's count: the message on the wire (sending) has its place reserved already.
    assert "43 of 200 (21%)" in text(card)
    assert figures["Remaining"] == "157"
    assert figures["Last 600 s"] == "6 of 30 messages"
    assert figures["Queued"] == "6"
    assert figures["Deferred"].startswith("6, until")
    assert _stamp(now + timedelta(minutes=10)) in card
    assert _stamp(now + timedelta(minutes=40)) in card
    assert figures["Failed in 24 h"].startswith("6")
    assert figures["Flagged sends waiting"].startswith("2")
    assert "Untested" in text(card)  # rows made directly: nothing proved it


def test_next_free_names_what_leaves_the_window_first_and_when(app, browser, admin):
    now = utcnow()
    minute = now.replace(second=0, microsecond=0)
    oldest = minute - timedelta(hours=23) + timedelta(seconds=10)
    with app.app_context():
        account = make_account(daily_limit=1000)
        send = make_send(make_user("olive@charity.example"), account)
        add_messages(send, 3, MessageStatus.SENT, sent_at=oldest)
        add_messages(send, 2, MessageStatus.SENT, sent_at=oldest + timedelta(seconds=20))
        add_messages(send, 4, MessageStatus.SENT, sent_at=oldest + timedelta(minutes=2))
        account_id = account.id
        db.session.commit()

    figures = definitions(card := _card(browser, account_id))
    # The first five leave within the minute after oldest + 24 h: said as that minute's end.
    assert figures["Capacity frees"].startswith("next 5 free at")
    assert _stamp(minute + timedelta(hours=1, minutes=1)) in card
    assert figures["Remaining"] == "991"


def test_reserve_is_kept_out_of_the_remaining_allowance(app, browser, admin):
    with app.app_context():
        account = make_account(daily_limit=1000, reserve_percent=10)
        send = make_send(make_user("olive@charity.example"), account)
        add_messages(send, 50, MessageStatus.SENT, sent_at=utcnow() - timedelta(hours=1))
        account_id = account.id
        db.session.commit()

    figures = definitions(_card(browser, account_id))
    assert figures["Remaining"].startswith("850 (100 kept for mail sent from the mailbox itself)")


@pytest.mark.parametrize(
    ("sent", "level"), [(0, "green"), (69, "green"), (70, "amber"), (90, "amber"), (91, "red")]
)
def test_gauge_colour_switches_at_70_and_90_percent(app, browser, admin, sent, level):
    with app.app_context():
        account = make_account(daily_limit=100)
        send = make_send(make_user("olive@charity.example"), account)
        add_messages(send, sent, MessageStatus.SENT, sent_at=utcnow() - timedelta(hours=1))
        account_id = account.id
        db.session.commit()

    card = _card(browser, account_id)
    assert f'class="gauge gauge-{level}"' in card
    assert f"{sent} of 100 ({sent}%)" in text(card)


def test_single_account_first_then_operators_by_name_or_by_usage(app, browser, admin):
    with app.app_context():
        system = make_account(daily_limit=1000)
        busy = make_account(owner=make_user("zed@charity.example", name="Zed"), daily_limit=100)
        quiet = make_account(owner=make_user("amy@charity.example", name="Amy"), daily_limit=100)
        send = make_send(busy.owner, busy)
        add_messages(send, 80, MessageStatus.SENT, sent_at=utcnow() - timedelta(hours=1))
        order = [system.id, busy.id, quiet.id]
        db.session.commit()

    def card_order(url: str) -> list[int]:
        page = browser.get(url).get_data(as_text=True)
        return [int(found) for found in re.findall(r'<article[^>]* id="account-(\d+)"', page)]

    system_id, busy_id, quiet_id = order
    assert card_order("/dashboard") == [system_id, quiet_id, busy_id]
    assert card_order("/dashboard?sort=usage") == [system_id, busy_id, quiet_id]
    assert card_order("/dashboard?sort=nonsense") == [system_id, quiet_id, busy_id]


def test_fourteen_day_chart_is_drawn_from_the_rollups(app, browser, admin):
    with app.app_context():
        today = org_time.day_of(utcnow())
        account = make_account(daily_limit=500)
        add_daily(account, today, sent=120, failed=3)
        add_daily(account, today - timedelta(days=3), sent=480)
        add_daily(account, today - timedelta(days=13), sent=7)
        add_daily(account, today - timedelta(days=14), sent=999)  # outside the 14 days
        account_id = account.id
        db.session.commit()

    card = _card(browser, account_id)
    chart = section(card, f"chart-{account_id}-figures")
    rows = re.findall(
        r"<tr><th scope=\"row\">([^<]+)</th><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)", chart
    )
    assert len(rows) == 14
    by_day = {day: (sent, failed) for day, sent, failed in rows}
    assert by_day[today.strftime("%a %d %b")] == ("120", "3")
    assert by_day[(today - timedelta(days=3)).strftime("%a %d %b")] == ("480", "0")
    assert by_day[(today - timedelta(days=13)).strftime("%a %d %b")] == ("7", "0")
    assert "999" not in chart

    svg = re.search(r"<svg[^>]*role=\"img\".*?</svg>", card, re.DOTALL).group(0)
    assert len(re.findall(r'<rect class="chart-bar"', svg)) == 14
    assert 'class="chart-limit"' in svg and "limit 500" in svg
    assert f'aria-labelledby="chart-{account_id}-title chart-{account_id}-desc"' in svg
    assert "Highest 480 on" in text(section(svg, f"chart-{account_id}-desc"))


# 00:30 BST on 1 June, when UTC still says 31 May.
JUNE_FIRST_0030_BST = datetime(2026, 5, 31, 23, 30)


def test_the_charts_days_are_the_organisations_and_end_today_on_its_clocks(ctx):
    account = make_account()
    add_daily(account, date(2026, 6, 1), sent=5)
    add_daily(account, date(2026, 5, 19), sent=2)  # the 14th day back
    add_daily(account, date(2026, 5, 18), sent=99)  # the 15th: outside
    db.session.commit()

    [figures] = usage.account_figures(JUNE_FIRST_0030_BST, with_history=True)
    days = [(day.day, day.sent) for day in figures.history]
    assert len(days) == 14
    assert days[0] == (date(2026, 5, 19), 2)
    assert days[-1] == (date(2026, 6, 1), 5)


def test_a_message_sent_at_half_past_midnight_bst_counts_on_that_day(ctx):
    account = make_account()
    rollups.record_outcome(account.id, JUNE_FIRST_0030_BST, sent=1)
    db.session.commit()

    [figures] = usage.account_figures(JUNE_FIRST_0030_BST, with_history=True)
    assert figures.history[-1] == usage.DayFigures(date(2026, 6, 1), sent=1)


def test_queue_panel_reads_rq_and_the_oldest_due_message(app, browser, admin):
    now = utcnow()
    with app.app_context():
        account = make_account()
        send = make_send(make_user("olive@charity.example"), account)
        add_messages(send, 2, MessageStatus.QUEUED, due_at=now - timedelta(minutes=20))
        add_messages(send, 1, MessageStatus.DEFERRED, due_at=now + timedelta(hours=1))
        held = make_send(send.user, account, status=SendStatus.FLAGGED)
        add_messages(held, 1, MessageStatus.PENDING, due_at=now - timedelta(days=2))
        db.session.commit()
        queue = outbox.mail_queue()
        queue.enqueue("lamplight_mail.delivery.job.deliver", account.id)
        worker = Worker([queue], connection=queue.connection)
        worker.register_birth()

    try:
        panel = section(browser.get("/dashboard").get_data(as_text=True), "queue-heading")
        figures = definitions(
            section(browser.get("/dashboard").get_data(as_text=True), "dashboard-live")
        )
    finally:
        worker.register_death()
    assert "Queue" in text(panel)
    assert figures["Jobs waiting"] == "1"
    assert figures["Workers running"] == "1"
    assert figures["Oldest due message"] == "waiting 20 min"


def test_no_worker_and_no_redis_are_said_plainly(app, browser, admin, tmp_path):
    page = browser.get("/dashboard").get_data(as_text=True)
    assert definitions(page)["Workers running"].startswith("none: mail will not leave")

    app.config["REDIS_URL"] = f"unix://{tmp_path}/nothing-listens-here.sock"
    app.extensions["lamplight_redis"] = None
    response = browser.get("/dashboard")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Redis is not answering" in page
    assert definitions(page)["Workers running"] == "unknown"


def test_health_paused_with_reason_and_advice_and_waiting_for_password(app, browser, admin):
    with app.app_context():
        paused = make_account(
            paused_at=utcnow(),
            paused_reason="554 5.2.0 SubmissionQuotaExceededException",
            paused_advice="Wait until the oldest sends leave the window.",
        )
        waiting = make_account(
            owner=make_user("olive@charity.example"), auth_method=AuthMethod.LOGIN, password=None
        )
        paused_id, waiting_id = paused.id, waiting.id
        db.session.commit()

    paused_card = text(_card(browser, paused_id))
    assert "Paused" in paused_card
    assert "554 5.2.0 SubmissionQuotaExceededException" in paused_card
    assert "Wait until the oldest sends leave the window." in paused_card
    assert "Waiting for password" in text(_card(browser, waiting_id))


def test_archived_accounts_have_no_card_and_an_empty_dashboard_says_so(app, browser, admin):
    with app.app_context():
        make_account(archived_at=utcnow())
        db.session.commit()
    page = browser.get("/dashboard").get_data(as_text=True)
    assert "account-" not in section(page, "dashboard-live").replace("account-cards", "")
    assert "No email accounts are set up yet." in page


def test_refreshes_every_30_seconds_with_or_without_javascript(browser, admin):
    page = browser.get("/dashboard").get_data(as_text=True)
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in page
    assert 'src="/static/dashboard.js"' in page
    assert "<script>" not in page  # no inline script


def test_the_cards_are_headed_accounts_since_the_single_account_is_among_them(app, browser, admin):
    """They were headed "Operators' accounts" with the single account's card first."""
    with app.app_context():
        make_account(daily_limit=1000)
    page = browser.get("/dashboard").get_data(as_text=True)
    nav = re.search(r'<nav class="sort-links"[^>]*>.*?</nav>', page, re.S)[0]
    assert text(nav).startswith("Accounts by name")
    assert "Operators" not in page
