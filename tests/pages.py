"""Using the app as a browser does and reading what it shows: the test client with real CSRF
tokens, logging in, account forms as an admin fills them in, and a small reader for the pages
(stdlib html.parser: no extra test dependency)."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import encode_multipart

from lamplight_mail import users
from lamplight_mail.extensions import db
from lamplight_mail.models import Role, User
from tests.factories import PASSWORD, SMTP_PASSWORD, SMTP_USER

# --- Acting as a browser -------------------------------------------------------------------

_CSRF = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


class Browser:
    """The Flask test client with CSRF tokens taken from a real page, as a browser would."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def csrf_token(self) -> str:
        page = self.client.get("/login", follow_redirects=True).get_data(as_text=True)
        match = _CSRF.search(page)
        assert match, "no CSRF token on /login"
        return match.group(1) or match.group(2)

    def post(self, url: str, data: dict | None = None, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf_token())
        return self.client.post(url, data=data, **kwargs)

    def post_multipart(self, url: str, data: dict):
        """POST as a form with files is sent (multipart/form-data), encoded here, in memory:
        the test client would spool a large body to a temporary file it never closes."""
        boundary, body = encode_multipart({"csrf_token": self.csrf_token(), **data})
        return self.client.post(
            url, data=body, content_type=f"multipart/form-data; boundary={boundary}"
        )


class AuthActions:
    """People created as an admin creates them (audited), and logging in and out."""

    def __init__(self, app: Flask, browser: Browser) -> None:
        self.app = app
        self.browser = browser

    def create_user(self, email: str, role: Role = Role.OPERATOR, name: str | None = None) -> int:
        with self.app.app_context():
            user = users.create_user(email, name or email.split("@")[0].title(), role, PASSWORD)
            db.session.commit()
            return user.id

    def login(self, email: str, password: str = PASSWORD):
        return self.browser.post("/login", {"email": email, "password": password})

    def login_admin(self, email: str = "admin@charity.example") -> int:
        user_id = self.create_user(email, Role.ADMIN, "Ada Admin")
        response = self.login(email)
        assert response.status_code == 302, response.get_data(as_text=True)
        return user_id

    def login_operator(self, email: str = "olive@charity.example") -> int:
        user_id = self.create_user(email, Role.OPERATOR, "Olive Operator")
        response = self.login(email)
        assert response.status_code == 302, response.get_data(as_text=True)
        return user_id

    def logout(self):
        return self.browser.post("/logout")

    def user(self, user_id: int) -> User:
        return db.session.get(User, user_id)


def form_data(**overrides: str) -> dict[str, str]:
    """An Office 365 account form as an admin fills it in (limits left to the preset)."""
    data = {
        "provider": "office365",
        "host": "",
        "port": "",
        "auth_method": "login",
        "security": "tls",
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "from_email": SMTP_USER,
        "from_name": "Riverside Food Bank",
        "daily_limit": "",
        "per_minute_limit": "",
        "max_recipients": "",
        "connection_cap": "",
        "reserve_percent": "0",
    }
    data.update(overrides)
    return data


def user_form_data(**overrides: str) -> dict[str, str]:
    """The add-a-user form as an admin fills it in: Olive, an operator."""
    return {
        "email": "olive@charity.example",
        "name": "Olive",
        "role": "operator",
        "password": PASSWORD,
        **overrides,
    }


def server_form_data(server, **overrides: str) -> dict[str, str]:
    """The form pointed at a test SMTP server (STARTTLS unless overridden)."""
    return form_data(host=server.host, port=str(server.port), **overrides)


# --- Reading pages -------------------------------------------------------------------------


class _Section(HTMLParser):
    """Collects the markup of the element with a given id (nested elements included)."""

    VOID = frozenset({"br", "img", "input", "meta", "link", "hr", "wbr", "source", "col"})

    def __init__(self, element_id: str) -> None:
        super().__init__(convert_charrefs=False)
        self.element_id = element_id
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if self.depth == 0 and dict(attrs).get("id") == self.element_id:
            self.depth = 1
            self.parts.append(self.get_starttag_text())
            return
        if self.depth:
            self.parts.append(self.get_starttag_text())
            if tag not in self.VOID:
                self.depth += 1

    def handle_startendtag(self, tag, attrs):
        if self.depth:
            self.parts.append(self.get_starttag_text())

    def handle_endtag(self, tag):
        if self.depth:
            self.parts.append(f"</{tag}>")
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)

    def handle_entityref(self, name):
        if self.depth:
            self.parts.append(f"&{name};")

    def handle_charref(self, name):
        if self.depth:
            self.parts.append(f"&#{name};")


def section(page: str, element_id: str) -> str:
    """The markup of the element with `element_id`; AssertionError when there is none."""
    parser = _Section(element_id)
    parser.feed(page)
    assert parser.parts, f"no element with id {element_id!r} on the page"
    return "".join(parser.parts)


def text(markup: str) -> str:
    """Visible text, tags dropped and whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def link(page: str, rel: str) -> str | None:
    """The URL of the page's link with `rel` ("next", "prev"), if there is one."""
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
    return unescape(found.group(1)) if found else None


def walk(browser, url: str | None, rel: str = "next") -> list[str]:
    """Every page from `url` on, following its `rel` links until there is none."""
    pages = []
    while url:
        pages.append(browser.get(url).get_data(as_text=True))
        url = link(pages[-1], rel)
    return pages


def definitions(markup: str) -> dict[str, str]:
    """<dt>term</dt><dd>value</dd> pairs as text."""
    pairs = re.findall(r"<dt[^>]*>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", markup, re.DOTALL)
    return {text(term): text(value) for term, value in pairs}


def password_input(page: str) -> str:
    """The password <input> element as rendered."""
    match = re.search(r'<input[^>]*name="password"[^>]*>', page)
    assert match, "no password field on the page"
    return match.group(0)


def input_value(page: str, name: str) -> str | None:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*>', page)
    assert match, f"no {name} field on the page"
    value = re.search(r'value="([^"]*)"', match.group(0))
    return value.group(1) if value else None


def textarea_value(page: str, name: str) -> str:
    """What the <textarea> holds, as a browser would post it back (its first newline is the
    markup's, not the value's)."""
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>\r?\n?(.*?)</textarea>', page, re.S)
    assert match, f"no {name} box on the page"
    return unescape(match.group(1))


def selected_option(page: str, name: str) -> str:
    select_element = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert select_element, f"no {name} select on the page"
    option = re.search(r'<option selected value="([^"]*)"', select_element.group(1))
    assert option, f"nothing selected in {name}"
    return option.group(1)
