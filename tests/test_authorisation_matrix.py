"""The suite itself: who may do what, for every route of the URL map and four visitors
(anonymous, the operator who owns the data, another operator, an admin), and CSRF refused on
every route that changes state. A route with no rule here fails the first test."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.pages import Browser
from tests.routes_support import Route, World, all_routes, make_world

PUBLIC = "public"  # anyone, logged in or not
USER = "user"  # any logged-in user, acting on their own things
OWNER = "owner"  # the owner of the send in the URL, or an admin
ADMIN = "admin"

# One-click unsubscribe (RFC 8058): a mail client posts without any form, so no CSRF token can
# come with it; the unguessable per-recipient token in the URL is the proof instead.
CSRF_EXEMPT = {"unsubscribe.unsubscribe"}

RULES = {
    "auth.index": PUBLIC,
    "auth.login": PUBLIC,
    "auth.setup": PUBLIC,
    "ops.healthz": PUBLIC,
    "ops.metrics": PUBLIC,
    "unsubscribe.confirm": PUBLIC,
    "unsubscribe.unsubscribe": PUBLIC,
    "auth.logout": USER,
    "compose.compose": USER,
    "sends.index": USER,
    "help.mailchimp": USER,
    "accounts.my_email": USER,
    "accounts.my_email_test": USER,
    "oauth.my_connect": USER,
    "oauth.callback": USER,
    "sends.detail": OWNER,
    "sends.attachment": OWNER,
    "sends.cancel": OWNER,
    "sends.send_now": OWNER,
    "accounts.communication_settings": ADMIN,
    "accounts.system": ADMIN,
    "accounts.operators": ADMIN,
    "accounts.new_operator": ADMIN,
    "accounts.edit_operator": ADMIN,
    "accounts.delete": ADMIN,
    "accounts.test_connection": ADMIN,
    "accounts.test_email": ADMIN,
    "accounts.resume": ADMIN,
    "oauth.registrations": ADMIN,
    "oauth.connect": ADMIN,
    "oauth.switch_to_oauth": ADMIN,
    "suppressions.index": ADMIN,
    "suppressions.add": ADMIN,
    "suppressions.import_csv": ADMIN,
    "suppressions.remove": ADMIN,
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


@pytest.fixture
def world(app: Flask) -> World:
    return make_world(app)


def _request(browser: Browser, route: Route, url: str):
    return browser.get(url) if route.method == "GET" else browser.post(url)


def _to_login(response) -> bool:
    return response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_authorisation_matrix_and_csrf(world: World, route: Route):
    rule = RULES[route.endpoint]
    url = world.url(route)
    if route.method == "POST" and route.endpoint not in CSRF_EXEMPT:
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
        # A page for the owner; an action (POST) done, or refused for the send's state, then
        # back to the send.
        assert outcomes["operator"].status_code in ((200,) if route.method == "GET" else (200, 302))
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
