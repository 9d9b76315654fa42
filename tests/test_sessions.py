"""Issue 10, item 12: sessions can be ended. A session version on the user is checked on every
request and bumped on logout, password change and deactivation; admins deactivate and
reactivate users (audited, after a confirmation page)."""

from __future__ import annotations

from sqlalchemy import select

from lamplight_mail.extensions import db
from lamplight_mail.models import AuditEvent, Role, User
from tests.factories import PASSWORD
from tests.pages import AuthActions, Browser


def _logged_in_elsewhere(app, email: str) -> Browser:
    """A second browser with its own session for the same user."""
    other = Browser(app.test_client())
    assert AuthActions(app, other).login(email).status_code == 302
    assert other.get("/compose").status_code == 200
    return other


def _events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_session_cookie_copied_before_logout_no_longer_works(app, auth, browser):
    auth.login_operator()
    stolen = browser.client.get_cookie("session").value
    assert browser.get("/compose").status_code == 200
    auth.logout()
    browser.client.set_cookie("session", stolen)
    response = browser.get("/compose")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_logout_ends_the_users_other_sessions_too(app, auth, browser):
    auth.login_operator()
    other = _logged_in_elsewhere(app, "olive@charity.example")
    auth.logout()
    assert other.get("/compose").status_code == 302


def _new_password(browser: Browser, user_id: int, name: str, email: str, role: str):
    """An admin gives the user a new password on the user form."""
    return browser.post(
        f"/admin/users/{user_id}/edit",
        {"name": name, "email": email, "role": role, "password": "a brand new password"},
    )


def test_a_password_change_ends_the_users_sessions(app, auth, browser):
    operator_id = auth.create_user("olive@charity.example", Role.OPERATOR, "Olive")
    olive = _logged_in_elsewhere(app, "olive@charity.example")
    auth.login_admin()
    response = _new_password(browser, operator_id, "Olive", "olive@charity.example", "operator")
    assert response.status_code == 302
    assert olive.get("/compose").status_code == 302
    assert browser.get("/admin/users").status_code == 200  # the admin's own session goes on


def test_an_admin_changing_their_own_password_stays_logged_in(app, auth, browser):
    admin_id = auth.login_admin()
    response = _new_password(browser, admin_id, "Ada Admin", "admin@charity.example", "admin")
    assert response.status_code == 302
    assert browser.get("/admin/users").status_code == 200


def test_deactivation_asks_first_ends_sessions_and_refuses_login(app, auth, browser):
    operator_id = auth.create_user("olive@charity.example", Role.OPERATOR, "Olive")
    olive = _logged_in_elsewhere(app, "olive@charity.example")
    auth.login_admin()
    assert "Deactivate" in browser.get("/admin/users").get_data(as_text=True)

    confirm = browser.get(f"/admin/users/{operator_id}/deactivate").get_data(as_text=True)
    assert "Deactivate Olive?" in confirm and "logged out everywhere" in confirm
    assert olive.get("/compose").status_code == 200  # nothing happened yet

    response = browser.post(f"/admin/users/{operator_id}/deactivate")
    assert response.status_code == 302
    listing = browser.get("/admin/users").get_data(as_text=True)
    assert "Deactivated" in listing
    assert olive.get("/compose").status_code == 302

    page = AuthActions(app, olive).login("olive@charity.example").get_data(as_text=True)
    assert "This user has been deactivated" in page
    wrong = AuthActions(app, olive).login("olive@charity.example", "wrong password")
    assert "This user has been deactivated" not in wrong.get_data(as_text=True)
    [event] = _events(app, "user.deactivated")
    assert (event.target_id, event.actor_email) == (operator_id, "admin@charity.example")

    assert browser.post(f"/admin/users/{operator_id}/reactivate").status_code == 302
    assert AuthActions(app, olive).login("olive@charity.example", PASSWORD).status_code == 302
    assert olive.get("/compose").status_code == 200
    assert len(_events(app, "user.reactivated")) == 1


def test_an_admin_cannot_deactivate_themselves(app, auth, browser):
    admin_id = auth.login_admin()
    other_id = auth.create_user("other-admin@charity.example", Role.ADMIN)
    # Not offered: no link on the list or the edit page, and the confirmation page says no.
    listing = browser.get("/admin/users").get_data(as_text=True)
    assert f"/admin/users/{other_id}/deactivate" in listing
    assert f"/admin/users/{admin_id}/deactivate" not in listing
    assert "deactivate" not in browser.get(f"/admin/users/{admin_id}/edit").get_data(as_text=True)
    confirm = browser.get(f"/admin/users/{admin_id}/deactivate").get_data(as_text=True)
    assert "You cannot deactivate yourself: ask another admin." in confirm
    assert "Deactivate Ada Admin?" not in confirm and "<button" not in confirm.split("<main")[1]
    assert '<a href="/admin/users">Back to users</a>' in confirm
    # A post all the same is refused.
    page = browser.post(f"/admin/users/{admin_id}/deactivate", follow_redirects=True)
    assert "You cannot deactivate yourself" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, admin_id).is_active_user
    assert _events(app, "user.deactivated") == []


def test_deactivating_operators_needs_an_admin(app, auth, browser):
    admin_id = auth.create_user("admin@charity.example", Role.ADMIN)
    auth.login_operator()
    assert browser.post(f"/admin/users/{admin_id}/deactivate").status_code == 403
    with app.app_context():
        assert db.session.get(User, admin_id).is_active_user
