"""Compose: operators and admins write one email to many recipients, each sent on its own."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from lamplight_mail.accounts import resolution
from lamplight_mail.delivery import outbox
from lamplight_mail.models import EmailAccount
from lamplight_mail.recipients import MAX_RECIPIENTS, RecipientList, UnreadableFile, collect
from lamplight_mail.web.forms.compose import ComposeForm

bp = Blueprint("compose", __name__)


@bp.route("/compose", methods=["GET", "POST"])
def compose() -> Response | str:
    account = resolution.resolve_sending_account(current_user)
    form = ComposeForm()
    listing: RecipientList | None = None
    if form.validate_on_submit():
        listing = _read_recipients(form)
        if listing is not None and _acceptable(form, listing, account):
            return _send(form, listing, account)
    elif form.is_submitted() and not form.recipients_file.errors:
        listing = _read_recipients(form)
    if listing is not None and form.recipients_file.data:
        # A browser cannot put a file back into the form: its rows join the typed ones.
        form.recipients.data = listing.as_text()
        flash(f"The rows of {_filename(form)} are now in the recipients box.", "info")
    return render_template(
        "compose/compose.html",
        form=form,
        account=account,
        own_account=resolution.own_account(current_user),
        listing=listing,
    )


def _filename(form: ComposeForm) -> str:
    # Shown back to the user (escaped by the template), so their own name for it.
    return (form.recipients_file.data.filename or "the file")[-100:]


def _read_recipients(form: ComposeForm) -> RecipientList | None:
    upload = form.recipients_file.data
    try:
        if upload:
            return collect(form.recipients.data or "", upload.read(), _filename(form))
        return collect(form.recipients.data or "")
    except UnreadableFile as error:
        form.recipients_file.errors.append(str(error))
        return None


def _acceptable(form: ComposeForm, listing: RecipientList, account: EmailAccount | None) -> bool:
    if listing.problems and not form.drop_invalid.data:
        count = len(listing.problems)
        form.recipients.errors.append(
            f"{count} line{'s are' if count > 1 else ' is'} not a valid address: see the list "
            "below. Correct them, or choose to leave them out."
        )
        return False
    if not listing.recipients:
        form.recipients.errors.append("Add at least one recipient.")
        return False
    if listing.too_many:
        form.recipients.errors.append(
            f"A send can have at most {MAX_RECIPIENTS:,} recipients; this one has "
            f"{len(listing.recipients):,}. Bulk email belongs in MailChimp."
        )
        return False
    if account is None:
        form.form_errors.append("No email account is set up for you to send from (see above).")
        return False
    return True


def _send(form: ComposeForm, listing: RecipientList, account: EmailAccount) -> Response:
    flag_reason = outbox.flag_reason(account, len(listing.recipients))
    send = outbox.create_send(
        current_user,
        account,
        listing.recipients,
        form.subject.data.strip(),
        form.body.data,
        form.body_html.data or None,
        flag_reason=flag_reason,
    )
    repeated = "address" if listing.duplicates == 1 else "addresses"
    merged = (
        f" ({listing.duplicates:,} repeated {repeated} sent once)" if listing.duplicates else ""
    )
    if flag_reason:
        flash(f"Your email is held for an admin to review: {flag_reason}", "warning")
    else:
        flash(
            f"Your email to {send.recipient_count:,} recipients is on its way{merged}.", "success"
        )
    return redirect(url_for("sends.detail", send_id=send.id))
