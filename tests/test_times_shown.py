"""Times on the pages are the organisation's (issue 12, point 6): LAMPLIGHT_MAIL_TIMEZONE,
Europe/London by default, summer time right, the zone named."""

from __future__ import annotations

from datetime import datetime

from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount
from tests.factories import OFFICE365, make_account


def _account_with_times(app, paused_at: datetime, succeeded_at: datetime) -> None:
    with app.app_context():
        account = make_account(audited=True, **OFFICE365)
        account = db.session.get(EmailAccount, account.id)
        account.last_outcome_ok, account.last_success_at = True, succeeded_at
        account.last_success_answer = "250 2.0.0 OK"
        account.paused_at, account.paused_reason = (
            paused_at,
            "535 5.7.3 Authentication unsuccessful",
        )
        db.session.commit()


def test_summer_and_winter_times_are_shown_on_uk_clocks_with_the_zone(app, auth, browser):
    auth.login_admin()
    _account_with_times(app, datetime(2026, 7, 14, 8, 30), datetime(2026, 1, 14, 8, 30))

    page = browser.get("/admin/communication-settings").get_data(as_text=True)

    assert "Paused 14 Jul 2026 09:30 BST" in page  # British Summer Time: UTC + 1
    assert "14 Jan 2026 08:30 GMT" in page  # winter: UTC
    assert "UTC" not in page
    for path in ("/dashboard", "/log", "/admin/audit"):
        assert "UK time (Europe/London)" in browser.get(path).get_data(as_text=True), path


def test_another_zone_is_named(app, auth, browser):
    app.config["TIMEZONE"] = "America/New_York"
    auth.login_admin()
    _account_with_times(app, datetime(2026, 7, 14, 8, 30), datetime(2026, 1, 14, 8, 30))

    page = browser.get("/admin/communication-settings").get_data(as_text=True)

    assert "Paused 14 Jul 2026 04:30 EDT" in page and "14 Jan 2026 03:30 EST" in page
    assert "America/New_York" in browser.get("/dashboard").get_data(as_text=True)
