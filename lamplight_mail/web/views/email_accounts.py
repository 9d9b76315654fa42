"""Communication Settings: the single account, operators' own accounts, checking them; and an
operator's own account under My email account."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from lamplight_mail.accounts import checks, editing, health, resolution
from lamplight_mail.accounts.checks import CheckResult
from lamplight_mail.accounts.editing import AccountConflict, AccountInUse
from lamplight_mail.extensions import db
from lamplight_mail.models import AccountKind, EmailAccount
from lamplight_mail.oauth.registration import PROVIDER_NAMES
from lamplight_mail.providers import PRESETS
from lamplight_mail.web import throttle
from lamplight_mail.web.access import admin_required
from lamplight_mail.web.forms.email_accounts import (
    AccountForm,
    EmailCheckForm,
    OperatorAccountForm,
    OwnPasswordForm,
    SystemAccountForm,
    preset_values,
)
from lamplight_mail.web.pagination import paginate

bp = Blueprint("accounts", __name__)

# How many individual accounts the overview lists before linking to the full list.
OVERVIEW_ACCOUNTS = 10


@bp.get("/admin/communication-settings")
@admin_required
def communication_settings() -> str:
    # Paused accounts first: they are the ones that need the admin.
    listed = db.session.scalars(
        resolution.operator_accounts_query(paused_first=True).limit(OVERVIEW_ACCOUNTS)
    ).all()
    return render_template(
        "accounts/settings.html",
        system=resolution.system_account(),
        operator_accounts=listed,
        operator_account_total=resolution.count_operator_accounts(),
    )


@bp.route("/admin/email/system", methods=["GET", "POST"])
@admin_required
def system() -> Response | str:
    account = resolution.system_account()
    form = SystemAccountForm(account=account)
    return _account_form(form, account, AccountKind.SYSTEM, "The single account for all operators")


@bp.get("/admin/email/operators")
@admin_required
def operators() -> str:
    page = paginate(resolution.operator_accounts_query())
    return render_template(
        "accounts/operators.html", page=page, can_add=bool(resolution.users_without_account())
    )


@bp.route("/admin/email/operators/new", methods=["GET", "POST"])
@admin_required
def new_operator() -> Response | str:
    candidates = resolution.users_without_account()
    form = OperatorAccountForm(candidates=candidates)
    title = "Add an individual operator account"
    return _account_form(form, None, AccountKind.OPERATOR, title, candidates=candidates)


@bp.route("/admin/email/operators/<int:account_id>/edit", methods=["GET", "POST"])
@admin_required
def edit_operator(account_id: int) -> Response | str:
    account = _operator_account(account_id)
    form = OperatorAccountForm(account=account, candidates=resolution.users_without_account())
    title = f"{account.owner.name}'s email account"
    return _account_form(form, account, AccountKind.OPERATOR, title)


@bp.route("/admin/email/system/delete", methods=["GET", "POST"], defaults={"account_id": None})
@bp.route("/admin/email/operators/<int:account_id>/delete", methods=["GET", "POST"])
@admin_required
def delete(account_id: int | None) -> Response | str:
    """GET asks for confirmation, naming who is affected; POST removes the account."""
    if account_id is None:
        account = resolution.system_account() or abort(404)
    else:
        account = _operator_account(account_id)
    if request.method == "POST":
        try:
            editing.remove_account(account)
        except AccountInUse as error:
            flash(str(error), "error")
        else:
            db.session.commit()
            flash(f"Removed {account.from_email}. Its delivery history is kept.", "success")
            return redirect(url_for("accounts.communication_settings"))
    return render_template(
        "accounts/delete.html",
        account=account,
        effect=editing.removal_effect(account),
        open_sends=editing.open_sends(account),
    )


@bp.post("/admin/email/<int:account_id>/test")
@admin_required
def test_connection(account_id: int) -> str:
    account = resolution.live_account(account_id) or abort(404)
    not_tested = _not_tested()
    result = None if not_tested else checks.check_connection(account)
    db.session.commit()
    form = EmailCheckForm(formdata=None, to=current_user.email)
    return _check_page(account, result, "Test connection", form, not_tested)


@bp.post("/admin/email/<int:account_id>/test-email")
@admin_required
def test_email(account_id: int) -> str:
    account = resolution.live_account(account_id) or abort(404)
    form = EmailCheckForm()
    result = not_tested = None
    if form.validate_on_submit():
        not_tested = _not_tested()
        if not not_tested:
            result = checks.send_test_email(account, form.to.data, current_user)
            db.session.commit()
    return _check_page(account, result, "Send test email", form, not_tested)


@bp.post("/admin/email/<int:account_id>/resume")
@admin_required
def resume(account_id: int) -> Response:
    account = resolution.live_account(account_id) or abort(404)
    if health.resume(account):
        db.session.commit()
        flash(f"Resumed {account.label}. Mail held for it goes out again shortly.", "success")
    else:
        flash(f"{account.label} was not paused.", "info")
    return redirect(url_for("accounts.communication_settings"))


@bp.route("/my/email", methods=["GET", "POST"])
def my_email() -> Response | str:
    account = resolution.own_account(current_user)
    form = OwnPasswordForm()
    if account is not None and form.validate_on_submit():
        editing.set_own_password(account, form.password.data)
        db.session.commit()
        flash("Your password is saved. Test the connection to check it works.", "success")
        return redirect(url_for("accounts.my_email"))
    return _my_email_page(account, form, None)


@bp.post("/my/email/test")
def my_email_test() -> str:
    account = resolution.own_account(current_user) or abort(404)
    not_tested = _not_tested()
    result = None if not_tested else checks.check_connection(account)
    db.session.commit()
    return _my_email_page(account, OwnPasswordForm(formdata=None), result, not_tested)


# --- helpers -------------------------------------------------------------------------------


def _not_tested() -> str | None:
    """Each test opens a connection to a mail server (and a test email sends real mail): a
    user gets so many per window, whichever account they test. Past that, what to say
    instead of a result: nothing was tried, so it is no failure, and the account's status and
    the audit trail (one entry per test made) are left as they were."""
    wait = throttle.take(throttle.ACCOUNT_TESTS_BY_USER, str(current_user.id))
    if wait is None:
        return None
    return f"Not tested: too many tests in a short while. Try again in {throttle.in_words(wait)}."


def sign_in_needed(account: EmailAccount, had_sign_in: bool) -> str | None:
    """After a save: say so when the account now waits for someone to sign in, and why (a
    changed provider, grant or "Send through" ends the sign-in it had)."""
    if not account.is_delegated or account.refresh_token_encrypted is not None:
        return None
    button = f"“Sign in with {PROVIDER_NAMES[account.oauth_provider]}”"
    where = f"press {button} next to it below"
    if account.owner:
        where += f" (or {account.owner.name} presses it under My email account)"
    if had_sign_in:
        return (
            f"{account.label} needs a new sign-in: the changed settings end the one it had, and "
            f"it sends nothing until someone signs in to the mailbox again: {where}."
        )
    return f"{account.label} needs a sign-in before it sends anything: {where}."


def _operator_account(account_id: int) -> EmailAccount:
    account = resolution.live_account(account_id)
    if account is None or account.kind != AccountKind.OPERATOR:
        abort(404)
    return account


def _account_form(
    form: AccountForm,
    account: EmailAccount | None,
    kind: AccountKind,
    title: str,
    **context: Any,
) -> Response | str:
    """Every account form's flow: fill in a preset (re-rendering), or validate and save."""
    if form.fill_preset.data:
        form.fill_from_preset()
    elif form.validate_on_submit():
        had_sign_in = account is not None and account.refresh_token_encrypted is not None
        try:
            account = editing.save_account(
                account,
                kind,
                form.account_values(),
                form.password_change(),
                **form.save_options(),
            )
        except AccountConflict as error:
            form.form_errors.append(str(error))
        else:
            db.session.commit()
            flash(f"Saved {account.label}.", "success")
            warning = form.port_warning()
            if warning:
                flash(f"Check the settings: {warning}", "warning")
            needed = sign_in_needed(account, had_sign_in)
            if needed:
                flash(needed, "warning")
            return redirect(url_for("accounts.communication_settings"))
    return render_template(
        "accounts/form.html",
        form=form,
        account=account,
        title=title,
        presets={name: preset_values(name) for name in PRESETS},
        preset_hints=list(PRESETS.items()),
        test_email_form=EmailCheckForm(formdata=None, to=current_user.email),
        **context,
    )


def _check_page(
    account: EmailAccount,
    result: CheckResult | None,
    what: str,
    form: EmailCheckForm,
    not_tested: str | None = None,
) -> str:
    return render_template(
        "accounts/check.html",
        account=account,
        result=result,
        not_tested=not_tested,
        what=what,
        test_email_form=form,
    )


def _my_email_page(
    account: EmailAccount | None,
    form: OwnPasswordForm,
    result: CheckResult | None,
    not_tested: str | None = None,
) -> str:
    shared = resolution.system_account()
    return render_template(
        "accounts/my_email.html",
        account=account,
        form=form,
        result=result,
        not_tested=not_tested,
        falls_back_to_shared=shared is not None and shared.default_for_operators,
    )
