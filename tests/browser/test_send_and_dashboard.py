"""In Chromium: an admin's email goes out through the real worker to the SMTP server, and the
dashboard shows the account's gauge at the figure the server received, and its 14-day chart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from tests.browser.support import (
    ADMIN,
    expect,
    log_in,
    nav,
    seed_people_and_account,
    write_email,
)
from tests.factories import SMTP_USER

if TYPE_CHECKING:
    from flask import Flask
    from playwright.sync_api import Locator, Page

    from tests.workers import LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUBJECT = "Café mornings are back on Tuesday"
RECIPIENTS = {
    "ada@example.org": "Ada Lovelace",
    "grace@example.org": "Grace Hopper",
    "alan@example.org": "Alan Turing",
    "zoe@example.org": "Zoë Ward",
}


def figure(area: Locator, term: str) -> Locator:
    """The figure a dashboard panel gives for `term` (its <dt>)."""
    return area.locator(f'dt:text-is("{term}") + dd')


def test_a_send_goes_out_through_the_worker_and_the_dashboard_shows_it(
    page: Page, live_app: LiveApp, app: Flask, screenshot
):
    label = seed_people_and_account(app, live_app.smtp, daily_limit=5)

    log_in(page, ADMIN)
    nav(page, "Compose")
    write_email(
        page,
        "\n".join(f"{name} <{email}>" for email, name in RECIPIENTS.items()),
        SUBJECT,
        "Dear friend,\n\nSee you there.\n",
    )
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_text("Your email to 4 recipients is on its way")).to_be_visible()

    # The worker delivers each message on its own; the progress page follows (it reloads
    # itself while mail goes out).
    received = live_app.smtp.recorder.wait_for(len(RECIPIENTS), timeout=60)
    assert sorted(rcpt for item in received for rcpt in item.rcpt_tos) == sorted(RECIPIENTS)
    assert {item.message["Subject"] for item in received} == {SUBJECT}
    assert {item.mail_from for item in received} == {SMTP_USER}
    expect(page.get_by_role("img", name="4 of 4 sent, 0 failed, 0 still to go")).to_be_visible()
    expect(page.locator(".facts .status")).to_have_text("done")

    # The dashboard: 4 of the 5 allowed recipients, amber (70 % to 90 %), and the chart.
    nav(page, "Dashboard")
    card = page.get_by_role("article", name=label)
    gauge = card.locator(".gauge")
    expect(gauge).to_contain_text("4 of 5 (80%)")
    expect(gauge).to_have_attribute("data-level", "amber")
    expect(figure(card, "Remaining")).to_have_text("1")
    chart = card.get_by_role("img", name=f"Recipients sent per day, last 14 days: {label}")
    expect(chart).to_be_visible()
    today = datetime.now(UTC).strftime("%d %b")
    expect(chart.locator("desc")).to_have_text(f"Highest 4 on {today}; daily limit 5.")
    card.get_by_text("Figures by day").click()
    today_row = card.get_by_role("row").filter(has=page.get_by_role("rowheader")).first
    expect(today_row).to_contain_text(today)
    expect(today_row.get_by_role("cell").first).to_have_text("4")
    expect(figure(page.get_by_role("region", name="Queue"), "Workers running")).to_have_text("1")
    screenshot(page, "dashboard")
