"""/log: filters return the right rows, keyset pages have no duplicates or gaps (ties on
created_at included), the CSV export holds exactly the filtered rows."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import Message, MessageStatus
from tests.factories import add_messages, make_account, make_send, make_user
from tests.pages import link, section, text, walk

DAY = datetime(2026, 3, 10, 9, 30)
BST_LATE = datetime(2026, 5, 31, 22, 30)  # 23:30 BST on 31 May
BST_EARLY = datetime(2026, 5, 31, 23, 30)  # 00:30 BST on 1 June


def _ids(page: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr id="message-(\d+)"', page)]


def _all_ids(app) -> list[int]:
    with app.app_context():
        order = (Message.created_at.desc(), Message.id.desc())
        return list(db.session.scalars(select(Message.id).order_by(*order)))


@pytest.fixture
def mailbox(app):
    """Two accounts, two senders, messages in every state over three days."""
    with app.app_context():
        olive = make_user("olive@charity.example", name="Olive Operator")
        pat = make_user("pat@charity.example", name="Pat Operator")
        system = make_account(daily_limit=1000, from_email="office@charity.example")
        own = make_account(owner=olive, daily_limit=1000)
        news = make_send(olive, system, subject="Spring newsletter", created_at=DAY)
        add_messages(news, 4, MessageStatus.SENT, created_at=DAY, sent_at=DAY)
        add_messages(
            news,
            2,
            MessageStatus.FAILED,
            created_at=DAY,
            recipient="gone{n}@example.org",
            attempts=1,
            last_code=550,
            last_response="5.1.1 User unknown",
        )
        later = DAY + timedelta(days=1)
        rota = make_send(olive, own, subject="Volunteer rota 100% confirmed", created_at=later)
        add_messages(
            rota, 3, MessageStatus.DEFERRED, created_at=later, recipient="vol{n}@EXAMPLE.net"
        )
        last = DAY + timedelta(days=2)
        food = make_send(pat, system, subject='=HYPERLINK("x") food bank', created_at=last)
        add_messages(
            food, 5, MessageStatus.QUEUED, created_at=last, recipient="family{n}@example.org"
        )
        db.session.commit()
        return {"system": system.id, "own": own.id}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", 14),
        ("state=failed", 2),
        ("state=deferred", 3),
        ("account={own}", 3),
        ("account={system}&state=sent", 4),
        ("date_from=2026-03-11", 8),
        ("date_to=2026-03-10", 6),
        ("date_from=2026-03-11&date_to=2026-03-11", 3),
        ("q=example.NET", 3),  # recipient, case-insensitive
        ("q=newsletter", 6),  # subject
        ("q=100%25", 3),  # a literal % is not a wildcard
        ("q=1%25", 0),
        ("q=gone&state=failed&account={system}", 2),
    ],
)
def test_filters_return_the_matching_rows(browser, admin, mailbox, app, query, expected):
    response = browser.get("/log?" + query.format(**mailbox))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    ids = _ids(page)
    assert len(ids) == expected
    assert len(set(ids)) == expected


def test_date_filters_take_the_organisations_days_across_british_summer_time(app, browser, admin):
    # 23:30 BST on 31 May and 00:30 BST on 1 June: both 31 May in UTC.
    with app.app_context():
        olive = make_user("olive@charity.example")
        account = make_account(owner=olive)
        for moment, who in ((BST_LATE, "late"), (BST_EARLY, "early")):
            send = make_send(olive, account, created_at=moment)
            add_messages(send, 1, MessageStatus.SENT, created_at=moment, recipient=f"{who}@x.org")
        db.session.commit()

    def found(query: str) -> list[str]:
        page = browser.get(f"/log?{query}").get_data(as_text=True)
        return re.findall(r"(early|late)@x\.org", page)

    assert found("date_from=2026-06-01&date_to=2026-06-01") == ["early"]
    assert found("date_from=2026-05-31&date_to=2026-05-31") == ["late"]
    assert found("date_to=2026-05-31") == ["late"]
    assert found("date_from=2026-06-01") == ["early"]
    june = browser.get("/log?date_from=2026-06-01").get_data(as_text=True)
    assert "01 Jun 2026 00:30 BST" in june
    assert "Day, UK time (Europe/London)." in june
    export = browser.get("/log/export.csv?date_from=2026-06-01").get_data(as_text=True)
    assert [row["Recipient"] for row in csv.DictReader(io.StringIO(export))] == ["early@x.org"]


def test_rows_show_account_sender_state_attempts_and_server_answer(browser, admin, mailbox):
    page = browser.get("/log?state=failed").get_data(as_text=True)
    row = text(section(page, f"message-{_ids(page)[0]}"))
    assert "Single account (office@charity.example)" in row
    assert "Olive Operator" in row
    assert "gone" in row and "Spring newsletter" in row
    assert "Failed" in row
    assert "550 5.1.1 User unknown" in row


def test_keyset_pages_cover_every_row_once_with_ties_on_created_at(app, browser, admin):
    with app.app_context():
        olive = make_user("olive@charity.example")
        send = make_send(olive, make_account(owner=olive))
        # 120 rows share one created_at (a bulk compose); 17 more have their own times.
        add_messages(send, 120, MessageStatus.QUEUED, created_at=DAY)
        for minute in range(17):
            add_messages(send, 1, MessageStatus.SENT, created_at=DAY + timedelta(minutes=minute))
        db.session.commit()
    expected = _all_ids(app)

    forth = walk(browser, "/log")
    pages = [_ids(page) for page in forth]
    assert [len(ids) for ids in pages] == [50, 50, 37]
    assert [row for ids in pages for row in ids] == expected

    # And back again through the "Newer" links, page for page.
    back = [_ids(page) for page in walk(browser, link(forth[-1], "prev"), "prev")]
    assert back == pages[-2::-1]


def test_filters_are_kept_across_pages(app, browser, admin, mailbox):
    with app.app_context():
        olive = make_user("other@charity.example")
        send = make_send(olive, make_account(owner=olive))
        add_messages(send, 60, MessageStatus.FAILED, created_at=DAY)
        add_messages(send, 60, MessageStatus.SENT, created_at=DAY)
        db.session.commit()
    first = browser.get("/log?state=failed").get_data(as_text=True)
    following = browser.get(link(first, "next")).get_data(as_text=True)
    shown = _ids(first) + _ids(following)
    assert len(shown) == len(set(shown)) == 62
    assert "state=failed" in link(first, "next")


def test_bad_filters_are_explained_next_to_the_fields_and_kept(browser, admin, mailbox):
    response = browser.get("/log?date_from=2026-13-45&q=rota&account=abc")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Not a valid date value." in text(section(page, "date_from-error"))
    assert 'value="2026-13-45"' in page and 'value="rota"' in page
    assert "Correct the filters above" in page

    response = browser.get("/log?date_from=2026-03-12&date_to=2026-03-10")
    assert "before the &#39;Created from&#39; day" in response.get_data(as_text=True)

    export = browser.get("/log/export.csv?date_from=yesterday")
    assert export.status_code == 400
    assert export.mimetype == "text/html"


def test_a_mangled_cursor_shows_the_first_page(browser, admin, mailbox):
    response = browser.get("/log?before=not-a-cursor&after=2026-99-99_x")
    assert response.status_code == 200
    assert len(_ids(response.get_data(as_text=True))) == 14


def test_csv_export_holds_exactly_the_filtered_rows(app, browser, admin, mailbox):
    response = browser.get(f"/log/export.csv?account={mailbox['system']}&date_to=2026-03-11")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert sorted(row["Recipient"] for row in rows) == sorted(
        [f"person{n}@example.org" for n in range(4)] + ["gone0@example.org", "gone1@example.org"]
    )
    failed = [row for row in rows if row["State"] == "failed"]
    assert {row["Server answer"] for row in failed} == {"5.1.1 User unknown"}
    assert {row["Server code"] for row in failed} == {"550"}
    assert {row["Account"] for row in rows} == {"Single account (office@charity.example)"}
    assert {row["Sender"] for row in rows} == {"Olive Operator <olive@charity.example>"}


def test_csv_export_of_everything_streams_in_batches_and_defuses_formulas(app, browser, admin):
    with app.app_context():
        olive = make_user("olive@charity.example")
        send = make_send(olive, make_account(owner=olive), subject='=HYPERLINK("http://x")')
        add_messages(send, 2345, MessageStatus.SENT, created_at=DAY, sent_at=DAY)
        db.session.commit()
    response = browser.get("/log/export.csv")
    assert response.headers["Cache-Control"] == "no-store"  # addresses stay out of caches
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 2345
    assert len({row["Message"] for row in rows}) == 2345
    assert {row["Subject"] for row in rows} == {'\'=HYPERLINK("http://x")'}
    assert rows[0]["Sent (UTC)"] == "2026-03-10 09:30:00"


def test_empty_log_says_so(browser, admin):
    page = browser.get("/log").get_data(as_text=True)
    assert "No messages." in text(page)
    assert 'rel="next"' not in page


@pytest.mark.parametrize("account", ["abc", "²", "99999", "9" * 30])
def test_an_account_filter_naming_no_account_says_so(browser, admin, mailbox, account):
    """`/log?account=abc` said WTForms's "Invalid Choice: could not coerce."."""
    response = browser.get("/log", query_string={"account": account})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Unknown account: choose one from the list." in text(section(page, "account-error"))
    assert "coerce" not in page and "Not a valid choice" not in page
    assert _ids(page) == []  # nothing is shown as if it were filtered
