"""Every route of the app, read from its URL map, for tests that must cover each one (a new
route is covered, or fails, without anyone adding it to a list)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet
from flask import Flask

from lamplight_mail import create_app


@dataclass(frozen=True)
class Route:
    endpoint: str
    rule: str  # e.g. /sends/<int:send_id>
    method: str  # GET or POST

    def url(self, **values: int | str) -> str:
        url = self.rule
        for name, value in values.items():
            url = url.replace(f"<int:{name}>", str(value)).replace(f"<{name}>", str(value))
        assert "<" not in url, f"no value for an argument of {self.rule}"
        return url

    def __str__(self) -> str:
        return f"{self.method} {self.rule}"


def listing_app() -> Flask:
    """An app built only to read its URL map (development mode: /dev/inbox included)."""
    return create_app(
        {"FERNET_KEYS": [Fernet.generate_key().decode()], "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    )


def all_routes() -> list[Route]:
    routes = {
        Route(rule.endpoint, rule.rule, method)
        for rule in listing_app().url_map.iter_rules()
        if rule.endpoint != "static"
        for method in ("GET", "POST")
        if method in rule.methods
    }
    return sorted(routes, key=lambda route: (route.rule, route.method))
