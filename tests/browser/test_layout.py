"""In Chromium at 1024 and 390 px wide (issue 12, point 9): every page an admin or operator
uses fits its width (no horizontal overflow of the page, no action cut off), with long
addresses, a paused account and a full delivery log; a screenshot of each at both widths."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from lamplight_mail.accounts import health
from lamplight_mail.delivery import outbox
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount, Role
from lamplight_mail.recipients import Recipient
from tests.browser.support import ADMIN, OPERATOR, log_in
from tests.factories import make_account, make_user

if TYPE_CHECKING:
    from flask import Flask
    from playwright.sync_api import Page

    from tests.workers import LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1024, 390)
LONG = "volunteer.coordinator.riverside.community.food.bank@charity-with-a-long-name.example.org"
ADMIN_PAGES = (
    "/dashboard",
    "/admin/communication-settings",
    "/admin/email/operators",
    "/admin/email/system",
    "/log",
    "/admin/users",
    "/admin/audit",
    "/admin/flagged",
    "/compose",
    "/sends",
)

# Whatever sticks out of the page sideways: the page itself wider than the window, or a
# button or link whose box reaches past the right edge (cut off inside a card).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  if (document.documentElement.scrollWidth > width) {
    found.push(`the page is ${document.documentElement.scrollWidth}px wide in ${width}px`);
  }
  const checked = 'body *';
  for (const el of document.querySelectorAll(checked)) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1) {
      let scrolls = false;  // inside a deliberate horizontal scroller is fine
      for (let p = el.parentElement; p; p = p.parentElement) {
        if (['auto', 'scroll'].includes(getComputedStyle(p).overflowX)) { scrolls = true; break; }
      }
      const what = (el.textContent || el.name || '').trim().slice(0, 40);
      if (!scrolls) found.push(`${el.tagName.toLowerCase()} "${what}" ends at ${box.right}px`);
    }
  }
  for (const el of document.querySelectorAll('main *')) {
    const style = getComputedStyle(el);
    if (el.closest('svg')) continue;  // chart labels are drawn, not laid out
    const spills = el.scrollWidth > el.clientWidth + 1 && el.clientWidth;
    if (style.overflowX === 'visible' && spills) {
      const what = (el.textContent || '').trim().slice(0, 50);
      const sizes = `${el.scrollWidth}px in ${el.clientWidth}px`;
      found.push(`${el.tagName.toLowerCase()} "${what}" holds ${sizes}`);
    }
  }
  return found;
}"""


def _seed(app: Flask, smtp) -> None:
    with app.app_context():
        admin = make_user(ADMIN, role=Role.ADMIN)
        operator = make_user(OPERATOR, role=Role.OPERATOR)
        shared = make_account(
            smtp,
            default_for_operators=True,
            from_email=LONG,
            from_name="Riverside Community Food Bank",
        )
        for number in range(3):
            person = make_user(f"{number}.{LONG}", role=Role.OPERATOR)
            make_account(smtp, owner=person, from_email=f"{number}.{LONG}")
        own = make_account(smtp, owner=operator, from_email=OPERATOR)
        health.pause(
            db.session.get(EmailAccount, own.id),
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
            "the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
            "Turn on Authenticated SMTP for this mailbox in the Microsoft 365 admin centre.",
        )
        db.session.commit()
        people = [Recipient(f"{n}.{LONG}", "A Very Long Recipient Name Indeed") for n in range(5)]
        outbox.create_send(admin, shared, people, "Spring appeal " * 8, "Dear friend")


@pytest.mark.parametrize("width", WIDTHS)
def test_pages_fit_at_common_widths(
    page: Page, live_app: LiveApp, app: Flask, screenshot, width: int
):
    _seed(app, live_app.smtp)
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, ADMIN)
    problems = {}
    for path in ADMIN_PAGES:
        page.goto(path)
        screenshot(page, f"{path.strip('/').replace('/', '-')}-{width}")
        found = page.evaluate(OVERFLOW)
        if found:
            problems[path] = found
    page.goto("/admin/email/system")
    preset = page.locator("input[name=fill_preset]")
    assert preset.evaluate("e => getComputedStyle(e).borderRadius") == "3px"  # styled as a button
    page.get_by_role("button", name="Log out").click()
    log_in(page, OPERATOR)
    for path in ("/my/email", "/compose"):
        page.goto(path)
        screenshot(page, f"operator-{path.strip('/').replace('/', '-')}-{width}")
        found = page.evaluate(OVERFLOW)
        if found:
            problems[f"operator {path}"] = found
    # The two buttons of My email account stand apart.
    page.goto("/my/email")
    save = page.get_by_role("button", name="Save the password").bounding_box()
    test = page.get_by_role("button", name="Test the connection").bounding_box()
    assert test["y"] >= save["y"] + save["height"] + 8 or test["x"] >= save["x"] + save["width"] + 8
    assert not problems, "\n".join(f"{k}: {v[:6]}" for k, v in problems.items())
