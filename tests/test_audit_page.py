"""/admin/audit: entries appear with who, what and when, newest first, paged without
duplicates, and never show a secret."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from lamplight_mail import audit
from lamplight_mail.extensions import db
from lamplight_mail.models import AuditEvent
from tests.factories import PASSWORD, make_account
from tests.pages import section, text, user_form_data, walk


def _event_ids(page: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr id="event-(\d+)"', page)]


def test_admin_actions_appear_without_the_password(auth, browser):
    auth.login_admin()
    response = browser.post("/admin/users/new", user_form_data())
    assert response.status_code == 302

    page = browser.get("/admin/audit").get_data(as_text=True)
    newest = text(section(page, f"event-{_event_ids(page)[0]}"))
    assert "admin@charity.example" in newest
    assert "olive@charity.example" in newest
    assert PASSWORD not in page


def test_details_are_shown_with_secrets_only_as_changed(app, auth, browser):
    admin_id = auth.login_admin()
    with app.app_context():
        audit.record(
            "account.updated",
            "email_account",
            7,
            "Changed the single account",
            {"host": "smtp.office365.com", "password": "app-password-9f3k2", "daily_limit": 9000},
            actor=auth.user(admin_id),
        )
        db.session.commit()

    page = browser.get("/admin/audit").get_data(as_text=True)
    row = text(section(page, f"event-{_event_ids(page)[0]}"))
    assert "Changed the single account" in row
    assert "email account #7" in row
    # In the form's words, values as people write them.
    assert "Host name smtp.office365.com" in row and "Recipients per 24 hours 9,000" in row
    assert "Password (changed)" in row
    assert "app-password-9f3k2" not in page


def test_pages_cover_every_event_once_with_ties_on_time(app, auth, browser):
    auth.login_admin()
    at = datetime(2026, 5, 1, 12, 0)
    with app.app_context():
        for number in range(120):
            db.session.add(
                AuditEvent(
                    at=at, action="test.event", target_type="user", summary=f"event {number}"
                )
            )
        db.session.commit()
        expected = list(
            db.session.scalars(
                select(AuditEvent.id).where(AuditEvent.at == at).order_by(AuditEvent.id.desc())
            )
        )

    seen = [event for page in walk(browser, "/admin/audit") for event in _event_ids(page)]
    at_ids = [event_id for event_id in seen if event_id in expected]
    assert at_ids == expected
    assert len(seen) == len(set(seen))


def test_ports_and_ids_are_not_written_as_quantities(app, auth, browser):
    """An account added on port 1025 showed "Port 1,025"."""
    admin_id = auth.login_admin()
    with app.app_context():
        make_account(audited=True, port=1025, daily_limit=10000)
        audit.record(
            "send.exported",
            "send",
            12345,
            "Exported a send",
            {"send_id": 12345, "recipients": 12345},
            actor=auth.user(admin_id),
        )
        db.session.commit()
    page = browser.get("/admin/audit").get_data(as_text=True)
    exported, added = (text(section(page, f"event-{event}")) for event in _event_ids(page)[:2])
    assert "Port 1025" in added and "1,025" not in added
    assert "Recipients per 24 hours 10,000" in added  # a quantity still reads as one
    assert "Send id 12345" in exported and "Recipients 12,345" in exported
