"""What an admin or operator reads around OAuth 2.0 sign-in: a change that ends a sign-in says
so, the test page's advice matches the state and offers the button, the flash names the mailbox
that signed in, help fits the account, and a stale callback goes back where it started."""

from __future__ import annotations

import pytest

from lamplight_mail.models import Role
from tests.oauth_support import accounts_in_db, oauth_form, register_apps, sign_in
from tests.pages import form_data

pytestmark = pytest.mark.oauth


def _page(response) -> str:
    return response.get_data(as_text=True)


def test_switching_send_through_to_graph_says_a_new_sign_in_is_needed(app, admin, browser):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form())
    [account] = accounts_in_db(app)
    sign_in(browser, f"/admin/email/{account.id}/connect")
    assert accounts_in_db(app)[0].health.value == "untested"  # signed in, not yet proven

    saved = browser.post(
        "/admin/email/system", oauth_form(transport="graph"), follow_redirects=True
    )
    page = _page(saved)
    assert "needs a new sign-in" in page
    assert "the changed settings end the one it had" in page
    assert "press “Sign in with Microsoft” next to it below" in page
    assert f'action="/admin/email/{account.id}/connect"' in page  # the button it names is there
    assert accounts_in_db(app)[0].health.value == "waiting_for_sign_in"

    # A save that keeps the sign-in says nothing about it.
    browser.post("/admin/email/system", oauth_form(transport="graph"))  # nobody signed in yet
    sign_in(browser, f"/admin/email/{account.id}/connect")
    kept = _page(
        browser.post(
            "/admin/email/system",
            oauth_form(transport="graph", from_name="Other name"),
            follow_redirects=True,
        )
    )
    assert "sign-in" not in kept.split("<main", 1)[1].split("</p>", 2)[1]  # the flashes
    assert "needs a new sign-in" not in kept and "needs a sign-in" not in kept


def test_the_test_page_of_an_account_nobody_signed_in_to_advises_signing_in_with_the_button(
    app, admin, browser
):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form(transport="graph"))
    [account] = accounts_in_db(app)
    page = _page(browser.post(f"/admin/email/{account.id}/test"))
    assert "nobody has signed in to this mailbox yet" in page
    assert "has expired or was revoked" not in page
    assert "Press “Sign in with Microsoft”" in page
    assert f'action="/admin/email/{account.id}/connect"' in page
    assert "Sign in with Microsoft</button>" in page


def test_the_flash_names_the_mailbox_that_signed_in_and_warns_of_another_from_address(
    app, admin, browser
):
    register_apps(browser)
    browser.post(
        "/admin/email/system",
        oauth_form(username="mailbox@charity.example", from_email="news@charity.example"),
    )
    [account] = accounts_in_db(app)
    done = sign_in(browser, f"/admin/email/{account.id}/connect")
    page = _page(browser.get(done.location))
    assert "Signed in to mailbox@charity.example: Single account (news@charity.example)" in page
    assert "The From address news@charity.example is not the mailbox that signed in" in page
    assert "Send As rights" in page

    browser.post(
        "/admin/email/system",
        oauth_form(username="news@charity.example", from_email="news@charity.example"),
    )
    done = sign_in(browser, f"/admin/email/{account.id}/connect")
    page = _page(browser.get(done.location))
    assert "Signed in to news@charity.example" in page
    assert "is not the mailbox that signed in" not in page


def test_help_fits_the_accounts_provider_and_authentication(app, auth, admin, browser):
    register_apps(browser)
    browser.post("/admin/email/system", form_data())  # Office 365 with a password
    page = _page(browser.get("/admin/email/system"))
    assert "How to create an app password" in page
    assert "Basic authentication is being switched off" in page

    browser.post("/admin/email/system", oauth_form())
    page = _page(browser.get("/admin/email/system"))
    assert "Signing in with OAuth 2.0" in page
    assert "How to create an app password" not in page
    assert "Basic authentication is being switched off" not in page

    browser.post("/admin/email/system", oauth_form(provider="gmail"))
    page = _page(browser.get("/admin/email/system"))
    assert "Office 365 with two-factor" not in page and "Signing in with OAuth 2.0" in page

    browser.post("/admin/email/system", form_data(provider="gmail"))
    page = _page(browser.get("/admin/email/system"))
    assert "Gmail with a password" in page and "Office 365 with two-factor" not in page

    # An operator's own OAuth account under My email account.
    operator_id = auth.create_user("olive@charity.example", Role.OPERATOR, "Olive Operator")
    browser.post(
        "/admin/email/operators/new",
        oauth_form(operator_id=str(operator_id), from_email="olive@charity.example"),
    )
    auth.logout()
    auth.login("olive@charity.example")
    page = _page(browser.get("/my/email"))
    assert "Signing in with OAuth 2.0" in page
    assert "Office 365 with two-factor" not in page
    assert "Basic authentication is being switched off" not in page


def test_the_oauth_apps_page_is_in_the_navigation_with_the_steps_before_the_form(admin, browser):
    page = _page(browser.get("/admin/communication-settings"))
    assert '<a href="/admin/oauth">OAuth apps</a>' in page.split("</nav>")[0]
    page = _page(browser.get("/admin/oauth"))
    form = page.index('<form method="post" class="narrow"')
    assert page.index("Registering Lamplight with Microsoft Entra") < form
    assert page.index("Registering Lamplight with Google Cloud") < form


def test_operators_do_not_get_the_oauth_apps_link(auth, browser):
    auth.login_operator()
    assert "/admin/oauth" not in _page(browser.get("/my/email"))


def test_a_stale_or_forged_callback_goes_back_to_the_page_it_started_from(app, admin, browser):
    register_apps(browser)
    browser.post("/admin/email/system", oauth_form())
    [account] = accounts_in_db(app)
    assert browser.post(f"/admin/email/{account.id}/connect").status_code == 302
    forged = browser.get("/oauth/callback?code=x&state=forged")
    assert forged.status_code == 302 and forged.location.endswith("/admin/email/system")
    assert "already used" in _page(browser.get(forged.location))

    # With no sign-in started in this browser: the page for the person's role.
    again = browser.get("/oauth/callback?code=x&state=forged")
    assert again.location.endswith("/admin/communication-settings")


def test_an_operators_stale_callback_goes_to_my_email(auth, browser):
    auth.login_operator()
    response = browser.get("/oauth/callback?state=stale")
    assert response.status_code == 302 and response.location.endswith("/my/email")
