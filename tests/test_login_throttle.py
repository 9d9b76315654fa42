"""Issue 10, item 11: failed log-ins are throttled by account and by client address (Redis),
with a clear message, and an unknown email costs a password hash like a known one."""

from __future__ import annotations

import statistics
import time

from tests.factories import PASSWORD

WRONG = "not the password at all"


def _login(browser, email: str, password: str, address: str = "192.0.2.1"):
    return browser.post(
        "/login",
        {"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_ten_wrong_passwords_lock_the_account_even_with_the_right_one(auth, browser):
    auth.create_user("olive@charity.example")
    for attempt in range(10):
        page = _login(browser, "olive@charity.example", WRONG, f"192.0.2.{attempt}")
        assert "do not match" in page.get_data(as_text=True)
    # The 11th try, from yet another address and with the right password, is refused.
    response = _login(browser, "olive@charity.example", PASSWORD, "198.51.100.7")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert (
        "Too many failed log-ins for this account. Try again in 15 minutes, or ask an admin to "
        "set a new password." in page
    )
    assert browser.get("/compose").status_code == 302  # not logged in
    # Another user is not affected.
    auth.create_user("amy@charity.example")
    assert _login(browser, "amy@charity.example", PASSWORD, "198.51.100.7").status_code == 302


def test_one_address_trying_many_accounts_is_stopped(auth, browser):
    auth.create_user("olive@charity.example")
    for attempt in range(30):
        _login(browser, f"guess{attempt}@charity.example", WRONG, "203.0.113.9")
    page = _login(browser, "olive@charity.example", PASSWORD, "203.0.113.9").get_data(as_text=True)
    # A new password would not lift this one, so the page does not advise asking for one.
    assert "Too many failed log-ins from your network. Try again in 15 minutes." in page
    assert "ask an admin" not in page and "for this account" not in page
    # The same user from their own address is let in.
    assert _login(browser, "olive@charity.example", PASSWORD, "192.0.2.50").status_code == 302


def test_a_successful_login_clears_the_accounts_failures(auth, browser):
    auth.create_user("olive@charity.example")
    for attempt in range(9):
        _login(browser, "olive@charity.example", WRONG, f"192.0.2.{attempt}")
    assert _login(browser, "olive@charity.example", PASSWORD).status_code == 302
    auth.logout()
    for attempt in range(9):
        _login(browser, "olive@charity.example", WRONG, f"192.0.2.{attempt}")
    assert _login(browser, "olive@charity.example", PASSWORD).status_code == 302


def test_the_throttle_window_ends(app, auth, browser, redis_client):
    auth.create_user("olive@charity.example")
    for attempt in range(10):
        _login(browser, "olive@charity.example", WRONG, f"192.0.2.{attempt}")
    assert "Too many" in _login(browser, "olive@charity.example", PASSWORD).get_data(as_text=True)
    # Fast-forward to the end of the 15 minutes: the counter's own expiry, in Redis, is what
    # ends the window.
    [key] = redis_client.scan_iter("lamplight:throttle:login-account:*")
    assert 0 < redis_client.ttl(key) <= 15 * 60
    redis_client.expire(key, 1)
    deadline = time.monotonic() + 30
    while redis_client.exists(key):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert _login(browser, "olive@charity.example", PASSWORD).status_code == 302


def _median_seconds(browser, email: str, first_address: int) -> float:
    times = []
    for attempt in range(5):
        started = time.perf_counter()
        _login(browser, email, WRONG, f"10.0.{first_address}.{attempt}")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_an_unknown_email_costs_a_password_hash_like_a_known_one(auth, browser):
    """Before: 259 ms for a known email, 5 ms for an unknown one. A hash takes the same time
    either way; the margin (a third) absorbs a loaded machine."""
    auth.create_user("olive@charity.example")
    _login(browser, "warm-up@charity.example", WRONG, "10.9.9.9")  # the dummy hash, made once
    known = _median_seconds(browser, "olive@charity.example", 1)
    unknown = _median_seconds(browser, "nobody@charity.example", 2)
    assert unknown > known / 3, (known, unknown)


def test_a_new_password_from_an_admin_lets_a_locked_out_user_in(app, auth, browser):
    """What the refusal advises: an admin sets a new password, and it works at once."""
    from tests.pages import AuthActions, Browser

    user_id = auth.create_user("olive@charity.example")
    for attempt in range(10):
        _login(browser, "olive@charity.example", WRONG, f"192.0.2.{attempt}")
    admin = Browser(app.test_client())
    AuthActions(app, admin).login_admin()
    response = admin.post(
        f"/admin/users/{user_id}/edit",
        {
            "name": "Olive",
            "email": "olive@charity.example",
            "role": "operator",
            "password": "a brand new password",
        },
    )
    assert response.status_code == 302
    assert _login(browser, "olive@charity.example", "a brand new password").status_code == 302


def _login_via_proxy(browser, email: str, password: str, forwarded_for: str):
    return browser.post(
        "/login",
        {"email": email, "password": password},
        headers={"X-Forwarded-For": forwarded_for},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},  # the proxy
    )


def test_a_forged_forwarded_address_does_not_escape_the_throttle(auth, browser):
    """No proxy configured: X-Forwarded-For is the client's own claim and is ignored."""
    auth.create_user("olive@charity.example")
    for attempt in range(30):
        _login_via_proxy(browser, f"guess{attempt}@charity.example", WRONG, f"198.51.100.{attempt}")
    page = _login_via_proxy(browser, "olive@charity.example", PASSWORD, "198.51.100.200")
    assert "Too many failed log-ins" in page.get_data(as_text=True)


def test_behind_a_trusted_proxy_clients_are_counted_apart(make_app, app_config):
    """LAMPLIGHT_MAIL_PROXY_HOPS=1: one client's failures do not lock out the others who
    arrive through the same proxy."""
    from tests.pages import AuthActions, Browser

    proxied = make_app({**app_config, "PROXY_HOPS": 1})
    browser = Browser(proxied.test_client())
    AuthActions(proxied, browser).create_user("olive@charity.example")
    for attempt in range(30):
        _login_via_proxy(browser, f"guess{attempt}@charity.example", WRONG, "203.0.113.9")
    blocked = _login_via_proxy(browser, "olive@charity.example", PASSWORD, "203.0.113.9")
    assert "Too many failed log-ins" in blocked.get_data(as_text=True)
    other = _login_via_proxy(browser, "olive@charity.example", PASSWORD, "192.0.2.77")
    assert other.status_code == 302


def test_with_redis_unreachable_log_in_still_works(make_app, app_config):
    """The throttle steps aside rather than lock everyone out during a Redis outage."""
    from tests.pages import AuthActions, Browser

    no_redis = make_app({**app_config, "REDIS_URL": "redis://127.0.0.1:1/0"})
    browser = Browser(no_redis.test_client())
    AuthActions(no_redis, browser).create_user("olive@charity.example")
    assert "do not match" in _login(browser, "olive@charity.example", WRONG).get_data(as_text=True)
    assert _login(browser, "olive@charity.example", PASSWORD).status_code == 302


def test_an_address_locked_out_for_one_account_is_told_of_the_network_not_a_new_password(
    app, auth, browser
):
    """Both lockouts at once: the network's is the one said, since an admin's new password
    lifts only the account's and the user would still be refused."""
    auth.create_user("olive@charity.example")
    for _ in range(10):
        _login(browser, "olive@charity.example", WRONG, "203.0.113.9")
    for attempt in range(20):
        _login(browser, f"guess{attempt}@charity.example", WRONG, "203.0.113.9")
    page = _login(browser, "olive@charity.example", PASSWORD, "203.0.113.9").get_data(as_text=True)
    assert "Too many failed log-ins from your network" in page
    assert "ask an admin to set a new password" not in page
    # From elsewhere, only the account's lockout holds, with its advice.
    page = _login(browser, "olive@charity.example", PASSWORD, "192.0.2.50").get_data(as_text=True)
    assert "Too many failed log-ins for this account" in page
    assert "ask an admin to set a new password" in page
