"""Headers every response carries so that a browser confines the app's pages.

The Content-Security-Policy allows scripts and styles from the app's own static files only (no
'unsafe-inline': templates hold no inline script, style element or style attribute), no
framing (clickjacking), forms posting only back to the app, or on to the OAuth providers'
sign-in pages (a browser applies form-action to the redirect that follows a post too). HSTS
only in production, where the app is served over HTTPS; in development it would pin localhost
to HTTPS for a year."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask
from werkzeug.wrappers import Response

from lamplight_mail.config import PRODUCTION


def content_security_policy(sign_in_urls: list[str]) -> str:
    """The policy; `sign_in_urls` are the OAuth providers' authorize endpoints that "Sign in
    with ..." posts are redirected to."""
    origins = sorted({_origin(url) for url in sign_in_urls if url})
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            " ".join(("form-action 'self'", *origins)),
            "frame-ancestors 'none'",
        )
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def init_app(app: Flask) -> None:
    production = app.config["ENV_MODE"] == PRODUCTION
    headers = {
        "Content-Security-Policy": content_security_policy(
            [app.config["MICROSOFT_AUTHORITY"], app.config["GOOGLE_AUTH_URL"]]
        ),
        **HEADERS,
    }

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if production:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
