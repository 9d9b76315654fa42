"""In Chromium: a compose larger than its account's allowance is held for an admin, who reads the
MailChimp advice on Flagged sends and downloads the MailChimp audience-import file."""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING

import pytest

from tests.browser.support import (
    ADMIN,
    OPERATOR,
    expect,
    log_in,
    log_out,
    nav,
    seed_people_and_account,
    write_email,
)

if TYPE_CHECKING:
    from flask import Flask
    from playwright.sync_api import Page

    from tests.workers import LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUBJECT = "Winter appeal: warm coats for the drop-in"
RECIPIENTS = [
    "Ada Lovelace <ada@example.org>",
    '"Hopper, Grace" <grace@example.org>',
    "Dr Alan Turing <alan@example.org>",
    "katherine@example.org",
    "Ludwig van Beethoven <ludwig@example.org>",
]


def test_a_send_over_the_allowance_is_held_and_exported_for_mailchimp(
    page: Page, live_app: LiveApp, app: Flask, screenshot
):
    label = seed_people_and_account(app, live_app.smtp, daily_limit=10_000)

    # The admin lowers the account's daily limit to three recipients.
    log_in(page, ADMIN)
    nav(page, "Communication Settings")
    page.get_by_role("link", name=f"Edit {label}").click()
    page.get_by_label("Recipients per 24 hours").fill("3")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text(f"Saved {label}.")).to_be_visible()
    log_out(page)

    # An operator writes to five people: more than the account may send in a day.
    log_in(page, OPERATOR)
    expect(page.get_by_role("heading", name="Compose an email")).to_be_visible()
    expect(page.get_by_role("region", name="Sending from")).to_contain_text(
        "It sends to at most 3 recipients in any 24 hours."
    )
    write_email(
        page, "\n".join(RECIPIENTS), SUBJECT, "Dear friend,\n\nCould you help this winter?\n"
    )
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_text("Your email is held for an admin to review")).to_be_visible()
    expect(page.get_by_text("Held for an admin to review; nothing has been sent.")).to_be_visible()
    log_out(page)

    # The admin finds it under Flagged sends, with the advice to use MailChimp.
    log_in(page, ADMIN)
    nav(page, "Flagged sends")
    expect(page.get_by_text("Bulk email belongs in MailChimp.")).to_be_visible()
    expect(page.get_by_role("link", name="Comms: Linking with Mailchimp")).to_be_visible()
    # The send's own row (its message opens in the row under it).
    row = page.get_by_role("row").filter(has_text=SUBJECT).filter(has_text="Olive")
    expect(row).to_contain_text("Olive")
    expect(row.get_by_role("cell").nth(3)).to_have_text("5")  # recipients
    expect(row.get_by_role("cell").nth(5)).to_have_text("3")  # daily limit
    expect(row).to_contain_text("Over more than one day: use MailChimp.")
    screenshot(page, "flagged-sends")

    row.get_by_role("link", name="Export for MailChimp").click()
    expect(page.get_by_role("heading", name="for MailChimp")).to_be_visible()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the CSV file").click()
    download = download_info.value
    assert download.suggested_filename.endswith("-mailchimp.csv")
    with open(download.path(), newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Email Address", "First Name", "Last Name"]
    assert sorted(rows[1:]) == [
        ["ada@example.org", "Ada", "Lovelace"],
        ["alan@example.org", "Alan", "Turing"],
        ["grace@example.org", "Grace", "Hopper"],
        ["katherine@example.org", "", ""],
        ["ludwig@example.org", "Ludwig", "van Beethoven"],
    ]

    # Held means held: the worker is running, yet the server received nothing.
    assert live_app.smtp.recorder.messages == []
