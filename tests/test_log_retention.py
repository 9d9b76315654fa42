"""`flask messages purge`: old finished messages and the sends they emptied go; anything still
to be sent stays; the rollups, and so the dashboard's 14-day chart, are kept."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from lamplight_mail.extensions import db
from lamplight_mail.models import AuditEvent, Message, MessageStatus, Send, SendStatus, utcnow
from lamplight_mail.ops import retention
from tests.factories import add_daily, add_messages, make_account, make_send, make_user
from tests.pages import section


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _chart_rows(browser, account_id: int) -> list[tuple[str, str, str]]:
    page = browser.get("/dashboard").get_data(as_text=True)
    table = section(page, f"chart-{account_id}-figures")
    return re.findall(r'<th scope="row">([^<]+)</th><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)', table)


def test_purge_deletes_old_finished_messages_and_keeps_the_chart(app, browser, auth):
    auth.login_admin()
    now = utcnow()
    with app.app_context():
        olive = make_user("olive@charity.example")
        account = make_account(owner=olive, daily_limit=500)
        for days_ago, sent in ((10, 30), (9, 12), (1, 5)):
            created = now - timedelta(days=days_ago)
            old = make_send(olive, account, status=SendStatus.DONE, created_at=created)
            add_messages(old, sent, MessageStatus.SENT, created_at=created, sent_at=created)
            add_daily(account, created.date(), sent=sent)
        mixed_at = now - timedelta(days=12)
        mixed = make_send(olive, account, status=SendStatus.SENDING, created_at=mixed_at)
        add_messages(mixed, 4, MessageStatus.FAILED, created_at=mixed_at)
        add_messages(mixed, 2, MessageStatus.DEFERRED, created_at=mixed_at)  # still to send
        account_id, mixed_id = account.id, mixed.id
        db.session.commit()
    chart_before = _chart_rows(browser, account_id)
    assert ("30", "0") in [(sent, failed) for _, sent, failed in chart_before]

    result = app.test_cli_runner().invoke(args=["messages", "purge", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert "Deleted 46 messages and 2 sends" in result.output

    with app.app_context():
        assert _count(Message) == 5 + 2
        assert _count(Message, Message.status == MessageStatus.DEFERRED) == 2
        assert _count(Send) == 2  # the recent send, and the one with mail still to send
        assert db.session.get(Send, mixed_id) is not None
        purged = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "messages.purged"))
        assert purged.details == {"days": 7, "messages": 46, "sends": 2}
    assert _chart_rows(browser, account_id) == chart_before


def test_retention_setting_defaults_to_90_days_and_drives_the_purge(app):
    now = utcnow()
    with app.app_context():
        olive = make_user("olive@charity.example")
        account = make_account(owner=olive)
        for days_ago in (100, 45, 20):
            created = now - timedelta(days=days_ago)
            send = make_send(olive, account, status=SendStatus.DONE, created_at=created)
            add_messages(send, 3, MessageStatus.SENT, created_at=created, sent_at=created)
        db.session.commit()

    runner = app.test_cli_runner()
    assert "kept for 90 days" in runner.invoke(args=["messages", "retention"]).output
    assert "Deleted 3 messages" in runner.invoke(args=["messages", "purge"]).output

    assert "kept for 30 days" in runner.invoke(args=["messages", "retention", "30"]).output
    assert "Deleted 3 messages" in runner.invoke(args=["messages", "purge"]).output
    with app.app_context():
        assert retention.retention_days() == 30
        assert _count(Message) == 3
        assert _count(AuditEvent, AuditEvent.action == "retention.changed") == 1

    refused = runner.invoke(args=["messages", "retention", "0"])
    assert refused.exit_code != 0


def test_purge_works_in_batches(app):
    created = utcnow() - timedelta(days=200)
    with app.app_context():
        olive = make_user("olive@charity.example")
        account = make_account(owner=olive)
        for _ in range(3):
            send = make_send(olive, account, status=SendStatus.DONE, created_at=created)
            add_messages(send, 11, MessageStatus.SENT, created_at=created, sent_at=created)
        db.session.commit()
        result = retention.purge(90, batch_size=4)
        assert (result.messages, result.sends) == (33, 3)
        assert _count(Message) == _count(Send) == 0
