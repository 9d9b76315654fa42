"""Compose: operators and admins write one email to many recipients, each sent on its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from lamplight_mail import attachments, org_time, suppressions
from lamplight_mail.accounts import resolution
from lamplight_mail.delivery import merge, outbox
from lamplight_mail.delivery.mime import HeaderInjection, new_message_id
from lamplight_mail.delivery.send_template import AttachedFile, SendTemplate
from lamplight_mail.extensions import db
from lamplight_mail.models import Attachment, EmailAccount, Send
from lamplight_mail.recipients import (
    Recipient,
    RecipientList,
    UnreadableFile,
    collect,
)
from lamplight_mail.web import message_view, submissions, throttle
from lamplight_mail.web.forms.compose import (
    MAX_RECIPIENTS_CHARACTERS,
    TOO_MANY_ADVICE,
    ComposeForm,
)
from lamplight_mail.web.forms.validators import NOT_KEPT
from lamplight_mail.web.url_params import ids_from
from lamplight_mail.wording import plural

bp = Blueprint("compose", __name__)
# Stands in for a recipient's own token in a preview: the link is shown, not usable.
PREVIEW_TOKEN = "preview"


@dataclass
class Audience:
    """Who a compose goes to: the checked list less the do-not-email list."""

    listing: RecipientList
    recipients: list[Recipient] = field(default_factory=list)
    left_out: int = 0  # on the do-not-email list


# The problems table lists this many lines; the rest are counted (and stay in the box).
MAX_PROBLEMS_SHOWN = 100


@bp.route("/compose", methods=["GET", "POST"])
def compose() -> Response | str | tuple[str, int]:
    account = resolution.resolve_sending_account(current_user)
    form = ComposeForm()
    audience: Audience | None = None
    shown: message_view.Shown | None = None
    if form.is_submitted():
        # Each post can cost seconds of parsing and checking: a user gets so many an hour.
        wait = throttle.take(throttle.COMPOSE_BY_USER, str(current_user.id))
        if wait is not None:
            # A preview costs what a send does, so it counts, and the message says so.
            form.form_errors.append(throttle.refusal("sent or previewed this form", wait))
            return _render(form, account, None, [], None), 429
    valid = form.validate_on_submit()
    # After validation, which would clear a refusal said on the attachments field. (A post
    # without a valid CSRF token never gets here: CSRFProtect refuses it first.)
    held = _held_attachments(form) if form.is_submitted() else []
    if valid:
        audience = _audience(form)
        if audience is not None and _acceptable(form, audience, account, held):
            if "preview" in request.form:
                shown = _preview(form, audience, account, held)
            else:
                earlier = submissions.claim(current_user.id, form.submission.data)
                if earlier is not None:
                    return _already_sent(earlier)
                return _send(form, audience, account, held)
    elif form.is_submitted() and not (form.recipients.errors or form.recipients_file.errors):
        # Read only what passed the size checks: an oversized list is refused unread.
        audience = _audience(form)
    if audience is not None:
        _carry(form, audience.listing)
    db.session.commit()  # attachments held for the next showing of the form
    form.staged_attachments.data = ",".join(str(a.id) for a in held)
    if not form.submission.data:
        form.submission.data = submissions.new_token()
    return _render(form, account, audience, held, shown)


def _render(
    form: ComposeForm,
    account: EmailAccount | None,
    audience: Audience | None,
    held: list[Attachment],
    shown: message_view.Shown | None,
) -> str:
    per_file, in_all = attachments.limits()
    return render_template(
        "compose/compose.html",
        form=form,
        account=account,
        own_account=resolution.own_account(current_user),
        listing=audience.listing if audience else None,
        audience=audience,
        held=held,
        shown=shown,
        per_file=attachments.megabytes(per_file),
        in_all=attachments.megabytes(in_all),
        problems_shown=MAX_PROBLEMS_SHOWN,
    )


def _carry(form: ComposeForm, listing: RecipientList) -> None:
    """A browser cannot put a file back into the form shown again: the file's rows join the
    typed ones in the box, its merge columns ride along in a hidden field. Unless that would
    be more than the form takes back: then the file is asked for again, saying why."""
    carried = listing.carried_fields() if listing.columns else ""
    if form.recipients_file.data:
        box = listing.rewrite()
        if not _fits(box, carried):
            form.recipients_file.errors.append(
                f"The rows of {_filename(form)} are too many to keep in this form while you "
                "correct it: correct what is marked, then choose the file again."
            )
            return
        form.recipients.data = box
        flash(f"The rows of {_filename(form)} are now in the recipients box.", "info")
    if carried:
        form.merge_data.data = carried


def _fits(box: str, carried: str) -> bool:
    """Whether the form could be posted back holding `box` and `carried`: within the box's own
    limit, and each within what one field of a post may hold (a 413 page would lose it all)."""
    per_field = request.max_form_memory_size
    return len(box) <= MAX_RECIPIENTS_CHARACTERS and (
        per_field is None or max(len(box.encode()), len(carried)) <= per_field
    )


def _filename(form: ComposeForm) -> str:
    # Shown back to the user (escaped by the template), so their own name for it.
    return (form.recipients_file.data.filename or "the file")[-100:]


def _held_attachments(form: ComposeForm) -> list[Attachment]:
    """The uploads held from earlier showings of the form, less those the user removed, plus
    this request's files (checked; a refusal is said on the field)."""
    held = attachments.staged(current_user, form.staged_ids())
    removed = ids_from(request.form.getlist("remove_attachment"))
    held = attachments.remove(held, removed)
    uploads = [upload for upload in form.attachments.data or [] if upload and upload.filename]
    try:
        return attachments.stage(current_user, uploads, held)
    except attachments.AttachmentRefused as error:
        form.attachments.errors = [*form.attachments.errors, str(error)]
        return held


def _audience(form: ComposeForm) -> Audience | None:
    upload = form.recipients_file.data
    carried = form.merge_data.data or ""
    try:
        if upload:
            listing = collect(form.recipients.data or "", upload.read(), _filename(form), carried)
        else:
            listing = collect(form.recipients.data or "", carried=carried)
    except UnreadableFile as error:
        form.recipients_file.errors.append(str(error))
        return None
    if listing.too_many:
        # Only a file's rows can take it past the limit (the box alone is held to as many
        # lines). Refused for its size, the list is not put back either.
        form.recipients.errors.append(
            f"This list has {len(listing.recipients):,} recipients. {TOO_MANY_ADVICE} {NOT_KEPT}"
        )
        form.recipients.data = ""
        return None
    listed = suppressions.listed(r.email for r in listing.recipients)
    recipients = [r for r in listing.recipients if r.email.lower() not in listed]
    return Audience(listing, recipients, len(listing.recipients) - len(recipients))


def _texts(form: ComposeForm) -> list[tuple[object, merge.Text]]:
    texts = [
        (form.subject, merge.Text(form.subject.data or "")),
        (form.body, merge.Text(form.body.data or "")),
    ]
    if form.body_html.data:
        texts.append((form.body_html, merge.Text(form.body_html.data, escape=True)))
    return texts


def _acceptable(
    form: ComposeForm, audience: Audience, account: EmailAccount | None, held: list[Attachment]
) -> bool:
    listing = audience.listing
    if form.attachments.errors:
        return False
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
    if not audience.recipients:
        form.recipients.errors.append(
            "Every recipient is on the do-not-email list: there is nobody to send to."
        )
        return False
    known = True
    for text_field, text in _texts(form):
        unknown = merge.unknown_fields([text], listing.columns)
        if unknown:
            text_field.errors.append(merge.describe_unknown(unknown))
            known = False
    if not known:
        return False
    if account is None:
        form.form_errors.append("No email account is set up for you to send from (see above).")
        return False
    return True


def _unsubscribe_base(form: ComposeForm) -> str | None:
    if not form.unsubscribe_link.data:
        return None
    public = current_app.config["PUBLIC_URL"] or request.url_root.rstrip("/")
    return f"{public}/u/"


def _preview(
    form: ComposeForm, audience: Audience, account: EmailAccount, held: list[Attachment]
) -> message_view.Shown | None:
    """The message exactly as the chosen (or first) recipient would get it; queues nothing."""
    chosen = audience.recipients[0]
    wanted = (form.preview_as.data or "").strip().lower()
    if wanted:
        match = [r for r in audience.recipients if r.email.lower() == wanted]
        if not match:
            form.preview_as.errors.append(f"{wanted} is not among the recipients.")
            return None
        chosen = match[0]
    columns = _used_columns(form, audience.listing)
    try:
        template = SendTemplate(
            from_email=account.from_email,
            from_name=account.from_name,
            subject=form.subject.data.strip(),
            body_text=form.body.data,
            body_html=form.body_html.data or None,
            reply_to=form.reply_to.data or None,
            attachments=[AttachedFile(a.filename, a.content_type, a.data) for a in held],
            unsubscribe_base=_unsubscribe_base(form),
        )
        raw = template.render(
            chosen.email,
            chosen.name,
            new_message_id(account.from_email),
            {column: chosen.fields.get(column, "") for column in columns},
            PREVIEW_TOKEN if form.unsubscribe_link.data else None,
        )
    except HeaderInjection as error:
        form.subject.errors.append(str(error))
        return None
    return message_view.read(raw)


def _used_columns(form: ComposeForm, listing: RecipientList) -> frozenset[str]:
    used = frozenset().union(*(text.fields for _, text in _texts(form)))
    return used & frozenset(listing.columns)


def _already_sent(earlier: submissions.Earlier) -> Response:
    """This form was posted before and that post sent it: show that send, never a second."""
    if earlier.send_id is not None:
        flash(
            "This email was already sent when you first pressed Send, so it was not sent "
            "again. To send it once more, compose it anew.",
            "info",
        )
        return redirect(url_for("sends.detail", send_id=earlier.send_id))
    flash(
        "This email is already being sent from when you first pressed Send, so it was not "
        "sent again: it is at the top of this list.",
        "info",
    )
    return redirect(url_for("sends.index"))


def _send(
    form: ComposeForm, audience: Audience, account: EmailAccount, held: list[Attachment]
) -> Response:
    token = form.submission.data
    try:
        send = _create_send(form, audience, account, held)
    except BaseException:
        submissions.release(current_user.id, token)  # nothing sent: the form may try again
        raise
    submissions.record(current_user.id, token, send.id)
    return _sent(send, audience)


def _create_send(
    form: ComposeForm, audience: Audience, account: EmailAccount, held: list[Attachment]
) -> Send:
    recipients = audience.recipients
    flag_reason = outbox.flag_reason(account, len(recipients))
    return outbox.create_send(
        current_user,
        account,
        recipients,
        form.subject.data.strip(),
        form.body.data,
        form.body_html.data or None,
        flag_reason=flag_reason,
        extras=outbox.Extras(
            reply_to=form.reply_to.data or None,
            send_at=form.send_at_utc,
            unsubscribe_base=_unsubscribe_base(form),
            attachments=held,
            merge_columns=_used_columns(form, audience.listing),
        ),
    )


def _sent(send: Send, audience: Audience) -> Response:
    listing = audience.listing
    notes = []
    if listing.duplicates:
        notes.append(
            f"{plural(listing.duplicates, 'repeated address', 'repeated addresses')} sent once"
        )
    if audience.left_out:
        notes.append(f"{audience.left_out:,} on the do-not-email list left out")
    noted = f" ({'; '.join(notes)})" if notes else ""
    if send.flag_reason:
        flash(f"Your email is held for an admin to review: {send.flag_reason}", "warning")
    elif send.send_at is not None:
        flash(
            f"Your email to {plural(send.recipient_count, 'recipient')} is scheduled for "
            f"{org_time.shown(send.send_at)}{noted}.",
            "success",
        )
    else:
        flash(
            f"Your email to {plural(send.recipient_count, 'recipient')} is on its way{noted}.",
            "success",
        )
    return redirect(url_for("sends.detail", send_id=send.id))
