"""OAuth 2.0 (modern authentication): the app registrations page, and delegated sign-in for an
account, started by an admin or by the operator who owns it, finished at /oauth/callback."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user
from werkzeug.wrappers import Response

from lamplight_mail.accounts import resolution
from lamplight_mail.delivery.transactions import write_transaction
from lamplight_mail.extensions import db
from lamplight_mail.models import EmailAccount
from lamplight_mail.oauth import grants, registration, signin
from lamplight_mail.web.access import admin_required
from lamplight_mail.web.account_pages import account_page
from lamplight_mail.web.forms.oauth import OAuthRegistrationForm

bp = Blueprint("oauth", __name__)

# The state of the sign-in this browser started: the callback must bring the same one back.
SESSION_STATE = "oauth_sign_in_state"
# The page it started from: a stale or forged callback goes back there, not to Compose.
SESSION_RETURN = "oauth_sign_in_return"


@bp.route("/admin/oauth", methods=["GET", "POST"])
@admin_required
def registrations() -> Response | str:
    stored = registration.current()
    form = OAuthRegistrationForm(obj=stored)
    if form.validate_on_submit():
        registration.save(form.values())
        db.session.commit()
        flash("Saved the OAuth app registrations.", "success")
        return redirect(url_for("oauth.registrations"))
    return render_template(
        "oauth/registrations.html",
        form=form,
        stored=stored,
        redirect_uri=registration.redirect_uri(request.url_root),
        public_url_set=bool(current_app.config.get("PUBLIC_URL")),
    )


@bp.post("/admin/email/<int:account_id>/connect")
@admin_required
def connect(account_id: int) -> Response:
    account = resolution.live_account(account_id) or abort(404)
    return _start(account, account_page(account))


@bp.post("/admin/email/<int:account_id>/switch-to-oauth")
@admin_required
def switch_to_oauth(account_id: int) -> Response:
    """The Office 365 notice's one click: OAuth 2.0 instead of the password, all else kept."""
    account = resolution.live_account(account_id) or abort(404)
    if account.basic_auth_retiring:
        grants.switch_to_oauth(account)
        db.session.commit()
        flash(
            f"{account.label} now uses OAuth 2.0. Sign in to the mailbox to send again"
            + (": the operator can do it under My email account." if account.owner else "."),
            "success",
        )
    return redirect(account_page(account))


@bp.post("/my/email/connect")
def my_connect() -> Response:
    account = resolution.own_account(current_user) or abort(404)
    return _start(account, url_for("accounts.my_email"))


@bp.get("/oauth/callback")
def callback() -> Response:
    state = request.args.get("state", "")
    expected = session.pop(SESSION_STATE, None)
    started_from = session.pop(SESSION_RETURN, None)
    pending = signin.take_pending(state) if state and state == expected else None
    if pending is None:
        flash(
            "This sign-in was not started from this browser, has expired (after ten minutes) "
            "or was already used. Start it again from the account's page.",
            "error",
        )
        return redirect(_local(started_from) or _accounts_home())
    try:
        # A GET that writes: on SQLite it takes the write lock up front, as form posts do.
        with write_transaction():
            account = signin.complete(
                pending,
                current_user,
                request.args.get("code"),
                request.args.get("error"),
                request.args.get("error_description"),
            )
    except signin.SignInFailed as failure:
        flash(f"The sign-in did not work: {failure.answer}", "error")
        if failure.hint:
            flash(f"What to do: {failure.hint}", "warning")
        return redirect(pending.return_to)
    mailbox = signin.mailbox_signed_in(account)
    flash(f"Signed in to {mailbox}: {account.label} can send email now.", "success")
    mismatch = signin.from_address_warning(account)
    if mismatch:
        flash(mismatch, "warning")
    return redirect(pending.return_to)


def _local(url: str | None) -> str | None:
    """Only a path on this site (what _start stored), never somewhere else."""
    if url and url.startswith("/") and not url.startswith("//"):
        return url
    return None


def _accounts_home() -> str:
    """Where sign-ins start for this person: Communication Settings, or My email account."""
    if current_user.is_authenticated and current_user.is_admin:
        return url_for("accounts.communication_settings")
    return url_for("accounts.my_email")


def _start(account: EmailAccount, back: str) -> Response:
    if not account.is_delegated:
        flash("This account does not sign in with OAuth 2.0: choose it under Authentication.")
        return redirect(back)
    try:
        url, state = signin.begin(
            account, current_user, registration.redirect_uri(request.url_root), return_to=back
        )
    except signin.SignInFailed as failure:
        flash(f"Cannot start the sign-in: {failure.answer}", "error")
        return redirect(back)
    db.session.rollback()  # nothing was changed: end the request's transaction
    session[SESSION_STATE] = state
    session[SESSION_RETURN] = back
    return redirect(url)
