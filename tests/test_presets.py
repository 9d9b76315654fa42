"""Presets carry the providers' own limits and hints (PROVIDERS.md; issue 12, point 5)."""

from __future__ import annotations

import pytest

from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import db
from tests.factories import OFFICE365, make_account
from tests.pages import form_data, input_value, selected_option

EXPECTED = {
    # provider: (host, auth, recipients a day, messages a minute, recipients per message)
    "office365": ("smtp.office365.com", "login", "10000", "30", "500"),
    "gmail": ("smtp.gmail.com", "login", "2000", "60", "100"),
    "outlook": ("smtp-mail.outlook.com", "oauth2", "300", "30", "500"),
}


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_filling_in_a_preset_gives_the_providers_limits(auth, browser, provider):
    auth.login_admin()
    page = browser.post(
        "/admin/email/system", form_data(provider=provider, fill_preset="Fill in the preset")
    ).get_data(as_text=True)

    host, auth_method, daily, per_minute, per_message = EXPECTED[provider]
    assert input_value(page, "host") == host
    assert selected_option(page, "auth_method") == auth_method
    assert input_value(page, "daily_limit") == daily
    assert input_value(page, "per_minute_limit") == per_minute
    assert input_value(page, "max_recipients") == per_message


def test_each_provider_hint_speaks_of_that_provider(auth, browser):
    auth.login_admin()
    page = browser.get("/admin/email/system").get_data(as_text=True)

    def hint(name: str) -> str:
        start = page.index(f'id="preset-hint-{name}">')
        return page[start : page.index("</dd>", start)]

    assert "2,000 messages a day" in hint("gmail") and "500" in hint("gmail")
    assert "Outlook.com" in hint("outlook") and "Office 365" not in hint("outlook")
    assert "10,000 recipients" in hint("office365")


def test_a_gmail_account_flags_a_send_over_2000_messages_a_day(app):
    """One recipient per message: the recipients-a-day window counts messages too."""
    with app.app_context():
        account = make_account(
            audited=True, **(OFFICE365 | {"provider": "gmail", "daily_limit": 2_000})
        )
        assert outbox.flag_reason(account, 2_000) is None
        assert outbox.flag_reason(account, 2_001) is not None
        db.session.rollback()
