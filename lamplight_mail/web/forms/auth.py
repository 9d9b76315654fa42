"""Log in, first-run setup and user management."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from lamplight_mail.models import Role
from lamplight_mail.web.forms.validators import EmailAddress, NoLineBreaks

MIN_PASSWORD_LENGTH = 10


# What a password manager may fill in: the user's own log-in only on the log-in page; on
# every form that sets a password (one's own at setup, or another user's) a new one, so the
# admin's own password is never slipped into someone else's form.
NEW_PASSWORD = {"autocomplete": "new-password"}


class LoginForm(FlaskForm):
    email = EmailField(
        "Email address",
        validators=[DataRequired("Enter your email address."), Length(max=254)],
        render_kw={"autocomplete": "username"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Enter your password."), Length(max=500)],
        render_kw={"autocomplete": "current-password"},
    )


class _UserFields(FlaskForm):
    # In the order the forms show them: the error summary lists them in this order. Each
    # says what to do, as the other forms do (WTForms's own "This field is required." does not).
    name = StringField(
        "Name", validators=[DataRequired("Enter a name."), Length(max=120), NoLineBreaks()]
    )
    email = EmailField(
        "Email address",
        validators=[DataRequired("Enter an email address."), Length(max=254), EmailAddress()],
    )


# One message for a password's length, in the words of the hint beside it (WTForms's default
# said "Field must be between 10 and 500 characters long." under "At least 10 characters.").
PASSWORD_LENGTH = [
    Length(min=MIN_PASSWORD_LENGTH, message=f"Use at least {MIN_PASSWORD_LENGTH} characters."),
    Length(max=500, message="Use at most 500 characters."),
]


class SetupForm(_UserFields):
    password = PasswordField(
        "Password",
        validators=[DataRequired("Choose a password."), *PASSWORD_LENGTH],
        description=f"At least {MIN_PASSWORD_LENGTH} characters.",
        render_kw=NEW_PASSWORD,
    )
    confirm = PasswordField(
        "Repeat the password",
        validators=[
            DataRequired("Type the password again."),
            EqualTo("password", message="The passwords do not match."),
        ],
        render_kw=NEW_PASSWORD,
    )


class UserForm(_UserFields):
    role = SelectField(
        "Role",
        choices=[
            SelectChoice(Role.OPERATOR.value, "Operator"),
            SelectChoice(Role.ADMIN.value, "Admin"),
        ],
        validators=[DataRequired()],
    )
    password = PasswordField(
        "Password",
        validators=[Optional(), *PASSWORD_LENGTH],
        description=f"At least {MIN_PASSWORD_LENGTH} characters. Blank keeps the current one.",
        render_kw=NEW_PASSWORD,
    )
