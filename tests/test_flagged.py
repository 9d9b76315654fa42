"""/admin/flagged: the figures an admin decides on, release, cancel, the MailChimp export and
the threshold."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from lamplight_mail.delivery import limits
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    AuditEvent,
    Message,
    MessageStatus,
    Role,
    Send,
    SendStatus,
    Setting,
    User,
)
from lamplight_mail.reporting.flagged import split_name
from lamplight_mail.web.template_globals import format_datetime
from tests.factories import make_account, make_send, people, record_sent

NAMED_RECIPIENTS = [
    ("zoe@example.org", "Zoë Ångström"),
    ("sian@example.org", "Dr Siân O\u2019Neill"),
    ("ada@example.org", "Lovelace, Ada"),
    ("ludwig@example.org", "Ludwig van Beethoven"),
    ("noname@example.org", ""),
    # A valid address that a spreadsheet would evaluate (issue 10, item 14).
    ("=2+3@example.org", '=HYPERLINK("http://evil.example")'),
]


@pytest.fixture
def flagged_send(app, auth):
    """An operator's send of 150 held on an account that has sent 40 of its 100 today."""
    with app.app_context():
        operator = db.session.get(
            User, auth.create_user("olive@charity.example", Role.OPERATOR, "Olive Operator")
        )
        account = make_account(
            daily_limit=100, per_minute_limit=30, from_email="office@charity.example"
        )
        record_sent(operator, account, 40)
        send = make_send(
            operator,
            account,
            NAMED_RECIPIENTS + people(144),
            status=SendStatus.FLAGGED,
            subject="Spring appeal",
            flag_reason=limits.flag_reason(account, 150),
        )
        db.session.commit()
        return send.id


def _get_send(send_id: int) -> Send:
    db.session.expire_all()
    return db.session.get(Send, send_id)


def test_flagged_page_shows_the_figures_and_the_mailchimp_advice(app, auth, browser, flagged_send):
    auth.login_admin()
    with app.app_context():
        send = _get_send(flagged_send)
        before = limits.estimate_finish(send.account, 150)
    page = browser.get("/admin/flagged").get_data(as_text=True)
    with app.app_context():
        after = limits.estimate_finish(_get_send(flagged_send).account, 150)

    assert "Olive Operator" in page
    assert "Single account (office@charity.example)" in page
    assert "Spring appeal" in page
    assert '<td class="number">150</td>' in page  # recipients
    assert '<td class="number">60</td>' in page  # can send now: 100 less the 40 sent
    assert '<td class="number">100' in page  # daily limit
    # 60 now, the other 90 as the 40 and then those 60 leave the window: a day out.
    with app.app_context():  # shown on the organisation's clocks
        shown = format_datetime(before), format_datetime(after)
    assert shown[0] in page or shown[1] in page
    assert "more than the account can send in a whole day" in page
    # Without LAMPLIGHT_MAIL_LAMPLIGHT_URL the link goes to this app's own page, which exists.
    assert 'href="/help/mailchimp"' in page and "/help/index/p/" not in page
    assert "Linking with Mailchimp" in browser.get("/help/mailchimp").get_data(as_text=True)
    assert "Over more than one day: use MailChimp." in page


def test_export_is_a_mailchimp_audience_csv_with_names_intact(app, auth, browser, flagged_send):
    auth.login_admin()
    assert "Download the CSV file" in browser.get(f"/admin/sends/{flagged_send}/export").get_data(
        as_text=True
    )

    response = browser.get(f"/admin/sends/{flagged_send}/export.csv")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    reader = csv.DictReader(io.StringIO(response.data.decode("utf-8")))
    rows = list(reader)
    assert reader.fieldnames == ["Email Address", "First Name", "Last Name"]
    assert len(rows) == 150
    assert rows[:6] == [
        {"Email Address": "zoe@example.org", "First Name": "Zoë", "Last Name": "Ångström"},
        {"Email Address": "sian@example.org", "First Name": "Siân", "Last Name": "O\u2019Neill"},
        {"Email Address": "ada@example.org", "First Name": "Ada", "Last Name": "Lovelace"},
        {
            "Email Address": "ludwig@example.org",
            "First Name": "Ludwig",
            "Last Name": "van Beethoven",
        },
        {"Email Address": "noname@example.org", "First Name": "", "Last Name": ""},
        # A spreadsheet opened on the way must not run it as a formula.
        {
            "Email Address": "'=2+3@example.org",
            "First Name": '\'=HYPERLINK("http://evil.example")',
            "Last Name": "",
        },
    ]
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "send.exported"))
        assert (event.target_id, event.actor_email) == (flagged_send, "admin@charity.example")
        assert _get_send(flagged_send).status == SendStatus.FLAGGED  # exporting changes nothing


def test_release_asks_first_then_queues_the_send(app, auth, browser, flagged_send):
    auth.login_admin()
    confirm = browser.get(f"/admin/sends/{flagged_send}/release").get_data(as_text=True)
    assert "Release “Spring appeal”?" in confirm and "the last message would go at about" in confirm
    with app.app_context():
        assert _get_send(flagged_send).status == SendStatus.FLAGGED  # asking changed nothing

    response = browser.post(f"/admin/sends/{flagged_send}/release")

    assert response.status_code == 302
    with app.app_context():
        send = _get_send(flagged_send)
        assert send.status == SendStatus.QUEUED
        assert send.released_by.email == "admin@charity.example"
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "send.released"))
    again = browser.post(f"/admin/sends/{flagged_send}/release", follow_redirects=True)
    assert "only a flagged send can be released" in again.get_data(as_text=True)


def test_cancel_asks_first_then_nothing_is_ever_sent(app, auth, browser, flagged_send):
    auth.login_admin()
    confirm = browser.get(f"/admin/sends/{flagged_send}/cancel").get_data(as_text=True)
    assert "Cancel “Spring appeal”?" in confirm and "cannot be undone" in confirm

    response = browser.post(f"/admin/sends/{flagged_send}/cancel", follow_redirects=True)

    assert "150 messages will not be sent" in response.get_data(as_text=True)
    with app.app_context():
        assert _get_send(flagged_send).status == SendStatus.CANCELLED
        statuses = set(
            db.session.scalars(select(Message.status).where(Message.send_id == flagged_send))
        )
        assert statuses == {MessageStatus.CANCELLED}
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "send.cancelled"))
    assert "No sends are waiting" in browser.get("/admin/flagged").get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/admin/flagged"),
        ("GET", "/admin/sends/{id}/export.csv"),
        ("POST", "/admin/sends/{id}/release"),
        ("POST", "/admin/sends/{id}/cancel"),
    ],
)
def test_operators_cannot_touch_flagged_sends(app, auth, browser, flagged_send, method, url):
    auth.login("olive@charity.example")
    url = url.format(id=flagged_send)
    response = browser.get(url) if method == "GET" else browser.post(url)
    assert response.status_code == 403
    with app.app_context():
        assert _get_send(flagged_send).status == SendStatus.FLAGGED


def test_admin_sets_and_clears_the_threshold(app, auth, browser):
    auth.login_admin()
    bad = browser.post("/admin/flagged/threshold", {"threshold": "lots"})
    page = bad.get_data(as_text=True)
    assert bad.status_code == 200
    assert 'id="threshold-error"' in page and 'value="lots"' in page

    assert browser.post("/admin/flagged/threshold", {"threshold": "500"}).status_code == 302
    with app.app_context():
        assert db.session.get(Setting, "flag_threshold").value == "500"
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "settings.flag_threshold")
        )
        assert event.details == {"from": None, "to": 500}
    assert "now: more than 500" in browser.get("/admin/flagged").get_data(as_text=True)

    browser.post("/admin/flagged/threshold", {"threshold": ""})
    with app.app_context():
        assert limits.flag_threshold() is None


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("Ada Lovelace", ("Ada", "Lovelace")),
        ("  Mary  Ann   Evans ", ("Mary", "Ann Evans")),
        ("Lovelace, Ada", ("Ada", "Lovelace")),
        ("Mrs. Ada Lovelace", ("Ada", "Lovelace")),
        ("Dr", ("Dr", "")),
        ("Cher", ("Cher", "")),
        ("", ("", "")),
    ],
)
def test_split_name(name, parts):
    assert split_name(name) == parts


def test_mailchimp_links_go_to_lamplights_help_when_its_url_is_set(app, auth, browser):
    app.config["LAMPLIGHT_URL"] = "https://riverside.lamplight.example"
    auth.login_admin()
    for path in ("/admin/flagged", "/admin/communication-settings"):
        page = browser.get(path).get_data(as_text=True)
        assert 'href="https://riverside.lamplight.example/help/index/p/21.2.0"' in page, path
