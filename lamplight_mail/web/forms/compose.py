"""Compose: who the email goes to, and what it says."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileSize
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from lamplight_mail.web.forms.validators import NoLineBreaks

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_BODY_CHARACTERS = 500_000


def _plain_newlines(value: str | None) -> str | None:
    # Browsers send CRLF; the message is built (and its lines ended for SMTP) from plain text.
    return value.replace("\r\n", "\n") if value else value


class ComposeForm(FlaskForm):
    recipients = TextAreaField(
        "Recipients",
        validators=[Optional(), Length(max=2_000_000)],
        description="One a line: an email address, or a name and the address in angle "
        "brackets, e.g. Jo Bloggs <jo@example.org>. Each person gets their own copy; nobody "
        "sees who else it went to. An address given twice is sent once.",
    )
    recipients_file = FileField(
        "Or add recipients from a CSV file (optional)",
        validators=[
            FileAllowed(["csv", "txt"], "Choose a .csv file."),
            FileSize(MAX_FILE_BYTES, message="The file is larger than 2 MB."),
        ],
        description="A spreadsheet saved as CSV UTF-8, with an “email” column and, if you "
        "like, a “name” column.",
    )
    subject = StringField(
        "Subject",
        validators=[DataRequired("Enter a subject."), Length(max=250), NoLineBreaks()],
    )
    body = TextAreaField(
        "Message",
        validators=[DataRequired("Write the message."), Length(max=MAX_BODY_CHARACTERS)],
        filters=[_plain_newlines],
    )
    body_html = TextAreaField(
        "HTML version (optional)",
        validators=[Optional(), Length(max=MAX_BODY_CHARACTERS)],
        filters=[_plain_newlines],
        description="Only if you have the message as HTML too; mail programs that show HTML "
        "use it, the others show the message above.",
    )
    # Offered once the list has lines that are not valid addresses.
    drop_invalid = BooleanField("Leave out the lines that are not valid and send to the others")
