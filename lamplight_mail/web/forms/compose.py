"""Compose: who the email goes to, and what it says."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileSize, MultipleFileField
from wtforms import BooleanField, Field, HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from lamplight_mail import org_time
from lamplight_mail.models import utcnow
from lamplight_mail.recipients import MAX_RECIPIENTS
from lamplight_mail.web.forms.validators import EmailAddress, ListSize, NoLineBreaks
from lamplight_mail.web.url_params import ids_from

# Room for 50,000 rows of an address, a name and a few short columns. Attachments (20 MB) and
# the text fields still fit in one post beside it (MAX_CONTENT_LENGTH, 28 MB).
MAX_FILE_MEGABYTES = 5
MAX_FILE_BYTES = MAX_FILE_MEGABYTES * 1024 * 1024
FILE_TOO_LARGE = f"The file is larger than {MAX_FILE_MEGABYTES} MB."
# Room for 50,000 typical lines (a file's rows come back here when the form is shown again),
# and below the 4 MB one form field may hold (MAX_FORM_MEMORY_SIZE), so a longer list gets
# this form's message rather than a bare 413.
MAX_RECIPIENTS_CHARACTERS = 3_500_000
MAX_BODY_CHARACTERS = 500_000
MAX_SCHEDULE_AHEAD = timedelta(days=366)  # a year, leap years included
TOO_MANY_ADVICE = (
    f"A send can have at most {MAX_RECIPIENTS:,} recipients; bulk email belongs in MailChimp."
)


def _plain_newlines(value: str | None) -> str | None:
    # Browsers send CRLF; the message is built (and its lines ended for SMTP) from plain text.
    return value.replace("\r\n", "\n") if value else value


class ComposeForm(FlaskForm):
    recipients = TextAreaField(
        "Recipients",
        # Checked before the list is read: reading costs time per line.
        validators=[
            Optional(),
            ListSize(MAX_RECIPIENTS_CHARACTERS, MAX_RECIPIENTS, TOO_MANY_ADVICE),
        ],
        description="One a line: an email address, or a name and the address in angle "
        "brackets, e.g. Jo Bloggs <jo@example.org>. Each person gets their own copy; nobody "
        "sees who else it went to. An address given twice is sent once.",
    )
    recipients_file = FileField(
        "Or add recipients from a CSV file (optional)",
        validators=[
            FileAllowed(["csv", "txt"], "Choose a .csv file."),
            FileSize(MAX_FILE_BYTES, message=FILE_TOO_LARGE),
        ],
        description="A spreadsheet saved as CSV UTF-8, with an “email” column and, if you "
        "like, a “name” column. Every other column is a merge field named by its header in "
        "lower case, spaces as _ (a “Post code” column is {post_code}).",
    )
    subject = StringField(
        "Subject",
        validators=[DataRequired("Enter a subject."), Length(max=250), NoLineBreaks()],
    )
    body = TextAreaField(
        "Message",
        validators=[DataRequired("Write the message."), Length(max=MAX_BODY_CHARACTERS)],
        filters=[_plain_newlines],
        description="Merge fields, filled for each recipient here, in the subject and in the "
        "HTML version: {first_name}, {last_name}, {name}, {email} and your CSV file's columns. "
        "Someone without a name gets “friend” for {first_name} and {name} and nothing for "
        "{last_name}; an empty CSV cell leaves its field empty. To write a brace, type it "
        "twice: {{ or }}.",
    )
    body_html = TextAreaField(
        "HTML version (optional)",
        validators=[Optional(), Length(max=MAX_BODY_CHARACTERS)],
        filters=[_plain_newlines],
        description="Only if you have the message as HTML too; mail programs that show HTML "
        "use it, the others show the message above.",
    )
    attachments = MultipleFileField(
        "Attachments (optional)",
        description="Choose one file or several; every recipient gets them all.",
    )
    send_at = StringField(
        "Send at (optional)",
        validators=[Optional()],
        render_kw={"type": "datetime-local"},
        description="Leave blank to send now.",
    )
    reply_to = StringField(
        "Reply-To (optional)",
        validators=[Optional(), Length(max=254), NoLineBreaks(), EmailAddress()],
        description="Where replies go, if not to the address it is sent from: a shared team "
        "inbox, say.",
    )
    unsubscribe_link = BooleanField(
        "Add an unsubscribe link",
        description="Each recipient gets their own link (and the one-click unsubscribe header "
        "Gmail and Yahoo ask bulk senders for); whoever uses it is put on the do-not-email "
        "list.",
    )
    preview_as = StringField(
        "Preview as (optional)",
        validators=[Optional(), Length(max=254)],
        description="The address of the recipient to preview; blank: the first.",
    )
    # A browser cannot put a file back into a form shown again: what the CSV's extra columns
    # held, and the attachments already uploaded, ride along in these.
    merge_data = HiddenField()
    staged_attachments = HiddenField()
    # One form, one send: a second post of the same form is taken to the first one's send
    # (web/submissions.py).
    submission = HiddenField(validators=[Optional(), Length(max=64)])
    # Offered once the list has lines that are not valid addresses.
    drop_invalid = BooleanField("Leave out the lines that are not valid and send to the others")

    def validate_send_at(self, field: Field) -> None:
        if not field.data:
            return
        try:
            moment = org_time.parse_local(field.data)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        if moment <= utcnow():
            raise ValidationError(
                "That time has passed. Leave it blank to send now, or choose a later time."
            )
        if moment > utcnow() + MAX_SCHEDULE_AHEAD:
            # A typing slip (9999-12-31) would otherwise hold the send, unnoticed, for ever.
            raise ValidationError(
                "That is more than a year ahead. Choose a time within the next year."
            )

    @property
    def send_at_utc(self) -> datetime | None:
        """send_at as naive UTC (after validation), or None to send now."""
        return org_time.parse_local(self.send_at.data) if self.send_at.data else None

    def staged_ids(self) -> list[int]:
        return ids_from((self.staged_attachments.data or "").split(","))
