"""Every main page, as an admin and as an operator, is markup a screen reader can follow: no id
used twice (a label or a link would point at the wrong element) and no form field without a
label. Also the small things a browser asks of every page: the favicon, and a plain answer for
an action's address opened as a page."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser

import pytest

from lamplight_mail.extensions import db
from lamplight_mail.models import Role, User
from tests.factories import flagged_and_queued, make_account

UNLABELLED_TYPES = {"hidden", "submit", "button", "image", "reset"}


class _Markup(HTMLParser):
    """The ids of a page, and its form fields with whether something labels them."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: Counter[str] = Counter()
        self.label_for: set[str] = set()
        self.fields: list[tuple[str, dict[str, str | None], bool]] = []
        self._open_labels = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids[attributes["id"]] += 1
        if tag == "label":
            self._open_labels += 1
            if attributes.get("for"):
                self.label_for.add(attributes["for"])
        if tag in ("input", "select", "textarea"):
            if tag == "input" and (attributes.get("type") or "text") in UNLABELLED_TYPES:
                return
            self.fields.append((tag, attributes, self._open_labels > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self._open_labels:
            self._open_labels -= 1

    def problems(self) -> list[str]:
        found = [f'id="{name}" is used {n} times' for name, n in self.ids.items() if n > 1]
        for tag, attributes, inside_label in self.fields:
            labelled = (
                inside_label
                or attributes.get("id") in self.label_for
                or attributes.get("aria-label")
                or attributes.get("aria-labelledby")
            )
            if not labelled:
                found.append(f"<{tag} name={attributes.get('name')!r}> has no label")
        return found


def markup_problems(page: str) -> list[str]:
    parser = _Markup()
    parser.feed(page)
    return parser.problems()


@pytest.fixture
def everything(app, auth):
    """A single account, an operator with an account of their own, a flagged send, a send of
    the operator's, and an address on the do-not-email list: every page has something to show."""
    admin_id = auth.login_admin()
    operator_id = auth.create_user("olive@charity.example", Role.OPERATOR, "Olive Operator")
    with app.app_context():
        operator = db.session.get(User, operator_id)
        make_account(audited=True, provider="office365", default_for_operators=True)
        own = make_account(owner=operator, password=None, audited=True, provider="office365")
        flagged, queued = flagged_and_queued(operator, own)
        db.session.commit()
        return {
            "admin": admin_id,
            "account": own.id,
            "flagged": flagged.id,
            "send": queued.id,
        }


def test_the_main_pages_have_unique_ids_and_labelled_fields(app, auth, browser, everything):
    assert browser.post("/admin/suppressions/add", {"email": "gone@example.org"}).status_code == 302
    flagged, send, account = everything["flagged"], everything["send"], everything["account"]
    admin_pages = [
        "/dashboard",
        "/compose",
        "/sends",
        f"/sends/{send}",
        f"/sends/{send}/cancel",
        f"/sends/{send}/send-now",
        "/my/email",
        "/admin/communication-settings",
        "/admin/email/system",
        "/admin/email/operators",
        f"/admin/email/operators/{account}/edit",
        "/admin/email/system/delete",
        "/admin/oauth",
        "/admin/flagged",
        f"/admin/sends/{flagged}/release",
        f"/admin/sends/{flagged}/cancel",
        f"/admin/sends/{flagged}/export",
        "/admin/suppressions",
        "/log",
        "/admin/users",
        "/admin/users/new",
        f"/admin/users/{everything['admin']}/edit",
        "/admin/audit",
    ]
    found = {}
    for url in admin_pages:
        response = browser.get(url)
        assert response.status_code == 200, url
        found[url] = markup_problems(response.get_data(as_text=True))
    auth.logout()
    assert auth.login("olive@charity.example").status_code == 302
    for url in ("/compose", "/sends", f"/sends/{send}", f"/sends/{send}/cancel", "/my/email"):
        response = browser.get(url)
        assert response.status_code == 200, url
        found[f"operator {url}"] = markup_problems(response.get_data(as_text=True))
    auth.logout()
    found["/login"] = markup_problems(browser.get("/login").get_data(as_text=True))
    assert {url: problems for url, problems in found.items() if problems} == {}


def test_the_checker_finds_a_shared_id_and_an_unlabelled_field():
    """The walk above can fail: the flagged page's heading and field once shared "threshold"."""
    page = (
        '<h2 id="threshold">Flag</h2><label for="threshold">Threshold</label>'
        '<input id="threshold" name="threshold"><input type="search" name="q">'
        '<label>Wrapped <input name="ok"></label><input type="hidden" name="csrf_token">'
    )
    assert markup_problems(page) == [
        'id="threshold" is used 2 times',
        "<input name='q'> has no label",
    ]


def test_every_page_links_a_favicon_that_is_served(auth, browser):
    auth.login_admin()
    page = browser.get("/admin/users").get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    with browser.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200
        assert icon.mimetype == "image/svg+xml" and b"<svg" in icon.data


def test_an_action_address_opened_as_a_page_says_where_its_button_is(app, auth, browser):
    auth.login_admin()
    with app.app_context():
        account_id = make_account(audited=True, provider="office365").id
    response = browser.get(f"/admin/email/{account_id}/test")
    assert response.status_code == 405
    page = response.get_data(as_text=True)
    assert "That page only works from its button" in page
    assert "Something went wrong" not in page
    assert '<a href="/admin/email/system">the page with the button</a>' in page
    assert "POST" in response.headers["Allow"]

    # An operator's own action leads back to My email account.
    auth.logout()
    auth.login_operator()
    page = browser.get("/my/email/test").get_data(as_text=True)
    assert '<a href="/my/email">the page with the button</a>' in page
