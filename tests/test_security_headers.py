"""Issue 10, item 15: security headers on every response, and pages that need no
'unsafe-inline' (no inline script, style element, style attribute or event handler)."""

from __future__ import annotations

import re

import pytest

from lamplight_mail.models import Role

INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline script"),
    (re.compile(r"<style\b", re.I), "style element"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "event handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def _get_pages(app) -> list[str]:
    """Every GET route without URL parameters (a new page is checked without a new line)."""
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and not rule.arguments and rule.endpoint != "static"
    )


def _assert_confined(response, url: str) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, url
    assert "script-src 'self'" in csp and "style-src 'self'" in csp, url
    assert "unsafe-inline" not in csp, url
    assert response.headers.get("X-Content-Type-Options") == "nosniff", url
    assert response.headers.get("Referrer-Policy") == "same-origin", url
    if response.mimetype == "text/html":
        page = response.get_data(as_text=True)
        for pattern, what in INLINE:
            assert not pattern.search(page), f"{url} has an {what}: CSP would block it"


def test_every_page_is_confined_and_holds_no_inline_code(app, auth, browser):
    _assert_confined(browser.get("/setup"), "/setup")
    auth.login_admin()
    auth.create_user("olive@charity.example", Role.OPERATOR)
    for url in _get_pages(app):
        _assert_confined(browser.get(url), url)
    for url in ("/admin/users/1/edit", "/admin/email/system", "/no-such-page"):
        _assert_confined(browser.get(url), url)


def test_static_files_carry_the_headers_too(browser):
    with browser.get("/static/style.css") as response:
        _assert_confined(response, "/static/style.css")


def test_hsts_only_in_production(make_app, app_config, client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    production = make_app({**app_config, "ENV_MODE": "production"})
    hsts = production.test_client().get("/healthz").headers.get("Strict-Transport-Security")
    assert hsts and "max-age=31536000" in hsts


@pytest.mark.parametrize("url", ["/static/account-form.js", "/static/dashboard.js"])
def test_scripts_do_not_write_style_attributes(app, url, client):
    with client.get(url) as response:
        script = response.get_data(as_text=True)
    assert 'setAttribute("style"' not in script and ".style." not in script


def test_forms_post_only_to_the_app_or_on_to_the_oauth_sign_in_pages(make_app, app_config):
    """A browser applies form-action to the redirect after a post: "Sign in with Microsoft"
    posts to the app, which redirects to the provider's authorize page."""
    configured = make_app(
        {
            **app_config,
            "MICROSOFT_AUTHORITY": "https://login.microsoftonline.com",
            "GOOGLE_AUTH_URL": "https://accounts.google.com/o/oauth2/v2/auth",
        }
    )
    csp = configured.test_client().get("/healthz").headers["Content-Security-Policy"]
    directive = next(part for part in csp.split("; ") if part.startswith("form-action"))
    assert directive.split() == [
        "form-action",
        "'self'",
        "https://accounts.google.com",
        "https://login.microsoftonline.com",
    ]
