"""Headers every response carries so that a browser confines the app's pages.

The Content-Security-Policy allows scripts and styles from the app's own static files only (no
'unsafe-inline': templates hold no inline script, style element or style attribute), no
framing (clickjacking), forms posting only back to the app. HSTS only in production, where the
app is served over HTTPS; in development it would pin localhost to HTTPS for a year."""

from __future__ import annotations

from flask import Flask
from werkzeug.wrappers import Response

from lamplight_mail.config import PRODUCTION

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def init_app(app: Flask) -> None:
    production = app.config["ENV_MODE"] == PRODUCTION

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if production:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
