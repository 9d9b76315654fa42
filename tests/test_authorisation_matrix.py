"""The suite itself: who may do what, for every route of the URL map and four visitors
(anonymous, the operator who owns the data, another operator, an admin), and CSRF refused on
every route that changes state. A route with no rule here fails the first test."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask

from lamplight_mail.extensions import db
from lamplight_mail.models import Role, SendStatus, User
from tests.conftest import AuthActions, Browser
from tests.limits_support import make_send
from tests.outbox_support import make_account
from tests.routes_support import Route, all_routes

PUBLIC = "public"  # anyone, logged in or not
USER = "user"  # any logged-in user, acting on their own things
OWNER = "owner"  # the owner of the send in the URL, or an admin
ADMIN = "admin"

RULES = {
    "auth.index": PUBLIC,
    "auth.login": PUBLIC,
    "auth.setup": PUBLIC,
    "ops.healthz": PUBLIC,
    "ops.metrics": PUBLIC,
    "auth.logout": USER,
    "compose.compose": USER,
    "sends.index": USER,
    "accounts.my_email": USER,
    "accounts.my_email_test": USER,
    "sends.detail": OWNER,
    "accounts.communication_settings": ADMIN,
    "accounts.system": ADMIN,
    "accounts.operators": ADMIN,
    "accounts.new_operator": ADMIN,
    "accounts.edit_operator": ADMIN,
    "accounts.delete": ADMIN,
    "accounts.test_connection": ADMIN,
    "accounts.test_email": ADMIN,
    "accounts.resume": ADMIN,
    "admin_sends.flagged": ADMIN,
    "admin_sends.threshold": ADMIN,
    "admin_sends.release": ADMIN,
    "admin_sends.cancel": ADMIN,
    "admin_sends.confirm_export": ADMIN,
    "admin_sends.export": ADMIN,
    "users.index": ADMIN,
    "users.new": ADMIN,
    "users.edit": ADMIN,
    "users.deactivate": ADMIN,
    "users.reactivate": ADMIN,
    "dashboard.index": ADMIN,
    "log.index": ADMIN,
    "log.export": ADMIN,
    "audit.index": ADMIN,
    "dev.inbox": ADMIN,
    "dev.message": ADMIN,
}
ROUTES = all_routes()


def test_every_route_has_a_rule():
    endpoints = {route.endpoint for route in ROUTES}
    missing = sorted(endpoints - RULES.keys())
    assert not missing, f"add these endpoints to RULES (who may use them?): {missing}"
    assert not sorted(RULES.keys() - endpoints), "RULES names endpoints that no longer exist"


@dataclass
class World:
    """The people and things the URLs point at; one browser per visitor."""

    values: dict[str, int | str]
    browsers: dict[str, Browser]


@pytest.fixture
def world(app: Flask) -> World:
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
        make_account(from_email="office@charity.example")
        send = make_send(
            operator,
            account,
            [("amy@example.org", "Amy")],
            status=SendStatus.FLAGGED,
            flag_reason="over the limit",
        )
        db.session.commit()
        values = {
            "account_id": account.id,
            "send_id": send.id,
            "user_id": other_id,
            "name": "nothing-caught.eml",
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


def _request(browser: Browser, route: Route, url: str):
    return browser.get(url) if route.method == "GET" else browser.post(url)


def _to_login(response) -> bool:
    return response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_authorisation_matrix_and_csrf(world: World, route: Route):
    rule = RULES[route.endpoint]
    url = route.url(**{k: v for k, v in world.values.items() if f"{k}>" in route.rule})
    if route.method == "POST":
        _assert_csrf_refused(world, route, rule, url)  # first: nothing may have changed yet
    # The admin last: its POSTs may change what the others would see (delete, deactivate).
    outcomes = {
        who: _request(world.browsers[who], route, url)
        for who in ("anonymous", "other operator", "operator", "admin")
    }
    for who, response in outcomes.items():
        assert response.status_code < 500, f"{who}: {response.status_code}"

    anonymous = outcomes["anonymous"]
    if rule == PUBLIC:
        assert anonymous.status_code != 403
    else:
        assert _to_login(anonymous), f"anonymous: {anonymous.status_code}"
    if rule == ADMIN:
        assert outcomes["operator"].status_code == 403
        assert outcomes["other operator"].status_code == 403
    if rule == OWNER:
        assert outcomes["operator"].status_code == 200
        assert outcomes["other operator"].status_code in (403, 404)
    # Logging out ends at the login page by design; every other user page is theirs to use.
    if rule == USER and route.endpoint != "auth.logout":
        for who in ("operator", "other operator"):
            assert outcomes[who].status_code != 403 and not _to_login(outcomes[who]), who
    admin = outcomes["admin"]
    if route.endpoint != "auth.logout":
        assert admin.status_code != 403 and not _to_login(admin), admin.status_code


def _assert_csrf_refused(world: World, route: Route, rule: str, url: str) -> None:
    """A post without the form's token, or with a forged one, is refused and changes nothing."""
    who = {PUBLIC: "anonymous", USER: "operator", OWNER: "operator", ADMIN: "admin"}[rule]
    browser = world.browsers[who]
    for data in ({}, {"csrf_token": "forged-token"}):
        response = browser.client.post(url, data=data)
        assert response.status_code == 400, f"{route} as {who}: {response.status_code}"
        assert "If the form had expired" in response.get_data(as_text=True)
    if who != "anonymous":
        assert browser.get("/sends").status_code == 200  # still logged in: logout refused too
