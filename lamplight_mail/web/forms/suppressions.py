"""The do-not-email list: one address to add, or a CSV file of them."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired, FileSize
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from lamplight_mail.web.forms.compose import FILE_TOO_LARGE, MAX_FILE_BYTES
from lamplight_mail.web.forms.validators import EmailAddress, NoLineBreaks


class AddSuppressionForm(FlaskForm):
    email = StringField(
        "Email address",
        validators=[
            DataRequired("Enter an email address."),
            Length(max=254),
            NoLineBreaks(),
            EmailAddress(),
        ],
    )


class ImportSuppressionsForm(FlaskForm):
    file = FileField(
        "CSV file",
        validators=[
            FileRequired("Choose a file."),
            FileAllowed(["csv", "txt"], "Choose a .csv file."),
            FileSize(MAX_FILE_BYTES, message=FILE_TOO_LARGE),
        ],
        description="Saved as CSV UTF-8, with an “email” column (other columns are ignored).",
    )
