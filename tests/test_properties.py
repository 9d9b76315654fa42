"""The suite itself: property tests (hypothesis). Whatever is typed or uploaded, recipients
parsing, CSV import and every form of the app answer with a page (a message or success), never
a 500."""

from __future__ import annotations

import io
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamplight_mail.headers import header_breaking_character
from lamplight_mail.recipients import UnreadableFile, read_csv, read_lines
from tests.pages import Browser
from tests.routes_support import World, all_routes, make_world

# Anything a browser can send: every code point but lone surrogates (not encodable as UTF-8).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
# Lines that look like recipients, so that both the good and the bad paths are taken.
RECIPIENT_LINE = st.one_of(
    TEXT,
    st.emails().map(str),
    st.tuples(TEXT, st.emails()).map(lambda pair: f"{pair[0]} <{pair[1]}>"),
)
PAGE_SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(max_examples=300, deadline=None)
@given(st.lists(RECIPIENT_LINE, max_size=20).map("\n".join))
def test_any_typed_list_reads_into_recipients_and_problems(text):
    listing = read_lines(text)
    for recipient in listing.recipients:
        assert header_breaking_character(recipient.name) is None
        assert header_breaking_character(recipient.email) is None
    entries = [line for line in text.splitlines() if line.strip().rstrip(",;").strip()]
    assert len(listing.recipients) + len(listing.problems) + listing.duplicates == len(entries)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=500),
        st.lists(st.lists(TEXT, max_size=4), max_size=6).map(
            lambda rows: "\n".join(",".join(row) for row in [["email", "name"], *rows]).encode()
        ),
    )
)
def test_any_uploaded_file_reads_or_is_refused_with_a_reason(data):
    try:
        listing = read_csv(data, "people.csv")
    except UnreadableFile as error:
        assert "people.csv" in str(error)
    else:
        for recipient in listing.recipients:
            assert header_breaking_character(recipient.name) is None


# --- every form of the app, through the pages --------------------------------------------


class _Forms(HTMLParser):
    """The POST forms of a page: action -> the names of their fields (no tokens, no files)."""

    def __init__(self, page_url: str) -> None:
        super().__init__()
        self.page_url = page_url
        self.forms: dict[str, set[str]] = {}
        self._current: set[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and (values.get("method") or "").lower() == "post":
            action = (values.get("action") or self.page_url).split("?")[0]
            self._current = self.forms.setdefault(action, set())
        elif tag in ("input", "select", "textarea", "button") and self._current is not None:
            name = values.get("name")
            if name and name != "csrf_token" and values.get("type") != "file":
                self._current.add(name)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def _forms(world: World, who: str) -> dict[str, set[str]]:
    browser = world.browsers[who]
    forms: dict[str, set[str]] = {}
    for route in all_routes():
        if route.method != "GET":
            continue
        url = world.url(route)
        response = browser.get(url)
        if response.mimetype != "text/html" or response.status_code != 200:
            continue
        parser = _Forms(url)
        parser.feed(response.get_data(as_text=True))
        for action, fields in parser.forms.items():
            forms.setdefault(action, set()).update(fields)
    # Logging out and deactivating (forms without fields) would end the run, not test input.
    return {action: fields for action, fields in forms.items() if fields}


@dataclass
class Fuzzing:
    browsers: dict[str, Browser]  # "admin", "operator"
    forms: dict[str, dict[str, set[str]]]  # who -> action -> field names


@pytest.fixture
def fuzzing(app: Flask) -> Fuzzing:
    app.config.update(COMPOSE_POSTS_PER_WINDOW=10_000, ACCOUNT_TESTS_PER_WINDOW=10_000)
    world = make_world(app)
    browsers = {who: world.browsers[who] for who in ("admin", "operator")}
    # Crawled once: every example of a test runs against the same world.
    return Fuzzing(browsers, {who: _forms(world, who) for who in browsers})


def test_the_crawl_finds_the_forms(fuzzing):
    admin_forms = fuzzing.forms["admin"]
    expected = ("/compose", "/admin/users/new", "/admin/email/system", "/admin/flagged/threshold")
    for action in expected:
        assert action in admin_forms, sorted(admin_forms)
    assert {"recipients", "subject", "body"} <= admin_forms["/compose"]
    assert "/my/email" in fuzzing.forms["operator"]


@PAGE_SETTINGS
@given(data=st.data())
def test_every_form_answers_any_input_with_a_page(fuzzing, data):
    for who, browser in fuzzing.browsers.items():
        for action, fields in sorted(fuzzing.forms[who].items()):
            values = {name: data.draw(TEXT, label=f"{action} {name}") for name in sorted(fields)}
            response = browser.post(action, values)
            assert response.status_code < 500, (who, action, values, response.status_code)


@PAGE_SETTINGS
@given(
    recipients=st.lists(RECIPIENT_LINE, max_size=8).map("\n".join),
    upload=st.binary(max_size=400),
)
def test_compose_answers_any_list_and_file_with_a_page(fuzzing, recipients, upload):
    response = fuzzing.browsers["operator"].post(
        "/compose",
        {
            "recipients": recipients,
            "recipients_file": (io.BytesIO(upload), "people.csv"),
            "subject": "Hello",
            "body": "Hi",
        },
        content_type="multipart/form-data",
    )
    assert response.status_code in (200, 302), response.status_code
