"""Every route of the app, read from its URL map, for tests that must cover each one (a new
route is covered, or fails, without anyone adding it to a list)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select

from lamplight_mail import create_app
from lamplight_mail.extensions import db
from lamplight_mail.models import Attachment, Message, Role, SendStatus, Suppression, User
from tests.factories import make_account, make_send
from tests.pages import AuthActions, Browser


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


@dataclass
class World:
    """The people and things route arguments point at, and one logged-in browser each."""

    values: dict[str, int | str]
    browsers: dict[str, Browser]  # anonymous, other operator, operator, admin

    def url(self, route: Route) -> str:
        return route.url(**{k: v for k, v in self.values.items() if f"{k}>" in route.rule})


def make_world(app: Flask) -> World:
    """An admin; an operator with an account of their own and a flagged send; another operator;
    the single account. Accounts point at a closed local port, so a test fails fast."""

    def browser_for(email: str | None) -> Browser:
        browser = Browser(app.test_client())
        if email:
            assert AuthActions(app, browser).login(email).status_code == 302
        return browser

    actions = AuthActions(app, Browser(app.test_client()))
    actions.create_user("admin@charity.example", Role.ADMIN, "Ada Admin")
    operator_id = actions.create_user("olive@charity.example", Role.OPERATOR, "Olive")
    other_id = actions.create_user("otto@charity.example", Role.OPERATOR, "Otto")
    with app.app_context():
        operator = db.session.get(User, operator_id)
        account = make_account(owner=operator)
        make_account(from_email="office@charity.example", default_for_operators=True)
        send = make_send(
            operator,
            account,
            [("amy@example.org", "Amy")],
            status=SendStatus.FLAGGED,
            flag_reason="over the limit",
        )
        db.session.add(
            Attachment(
                send_id=send.id,
                user_id=operator.id,
                filename="letter.pdf",
                content_type="application/pdf",
                size=4,
                data=b"%PDF",
            )
        )
        message = db.session.scalars(select(Message).where(Message.send_id == send.id)).one()
        message.unsubscribe_token = "world-unsubscribe-token"
        suppression = Suppression(email="gone@example.org", source="admin")
        db.session.add(suppression)
        db.session.commit()
        values = {
            "account_id": account.id,
            "send_id": send.id,
            "user_id": other_id,
            "name": "nothing-caught.eml",
            "suppression_id": suppression.id,
            "index": 0,
            "token": message.unsubscribe_token,
        }
    return World(
        values,
        {
            "anonymous": browser_for(None),
            "other operator": browser_for("otto@charity.example"),
            "operator": browser_for("olive@charity.example"),
            "admin": browser_for("admin@charity.example"),
        },
    )
