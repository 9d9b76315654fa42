"""In Chromium: an operator personalises a message, attaches a PDF, previews it (nothing is
sent), sends it through the real worker, and reads it on the send page, its HTML inert."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser.support import (
    OPERATOR,
    expect,
    log_in,
    nav,
    seed_people_and_account,
    write_email,
)

if TYPE_CHECKING:
    from pathlib import Path

    from flask import Flask
    from playwright.sync_api import Page

    from tests.workers import LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LETTER = b"%PDF-1.4\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"


def test_compose_with_preview_and_an_attachment_then_read_it_on_the_send_page(
    page: Page, live_app: LiveApp, app: Flask, screenshot, tmp_path: Path
):
    seed_people_and_account(app, live_app.smtp, daily_limit=50)
    letter = tmp_path / "casework-letter.pdf"
    letter.write_bytes(LETTER)

    log_in(page, OPERATOR)
    nav(page, "Compose")
    write_email(
        page,
        "Ada Lovelace <ada@example.org>\nGrace Hopper <grace@example.org>",
        "Your appointment, {first_name}",
        "Dear {name},\n\nYour letter is attached.\n",
    )
    page.get_by_text("Add an HTML version").click()
    page.get_by_label("HTML version (optional)").fill(
        '<p>Dear <strong>{first_name}</strong>,</p><img src="https://tracker.example/p.gif">'
        "<script>document.body.textContent = 'script ran'</script>"
    )
    page.get_by_label("Attachments (optional)").set_input_files(str(letter))
    page.get_by_role("button", name="Preview").click()

    expect(page.get_by_text("Preview: nothing has been sent.")).to_be_visible()
    preview = page.get_by_role("region", name="Preview")
    expect(preview.get_by_text("Your appointment, Ada")).to_be_visible()
    expect(preview.get_by_text("casework-letter.pdf")).to_be_visible()
    frame = preview.frame_locator("iframe.message-html")
    expect(frame.locator("strong")).to_have_text("Ada")
    expect(frame.get_by_text("script ran")).to_have_count(0)
    # Chromium paints a sandboxed frame only once it has been in view.
    preview.locator("iframe.message-html").scroll_into_view_if_needed()
    screenshot(page, "compose-preview")
    assert live_app.smtp.recorder.messages == []

    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_text("Your email to 2 recipients is on its way")).to_be_visible()
    received = live_app.smtp.recorder.wait_for(2, timeout=60)
    for item in received:
        (attached,) = list(item.message.iter_attachments())
        assert attached.get_filename() == "casework-letter.pdf"
        assert attached.get_content() == LETTER
    assert sorted(item.message["Subject"] for item in received) == [
        "Your appointment, Ada",
        "Your appointment, Grace",
    ]

    message = page.get_by_role("region", name="The message")
    expect(message.get_by_text("Your appointment, {first_name}")).to_be_visible()
    expect(message.get_by_role("link", name="casework-letter.pdf")).to_be_visible()
    expect(message.frame_locator("iframe.message-html").locator("strong")).to_have_text(
        "{first_name}"
    )
    message.locator("iframe.message-html").scroll_into_view_if_needed()
    screenshot(page, "send-page")
