"""Log in, first-run setup and user management."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from lamplight_mail.models import Role
from lamplight_mail.web.forms.validators import EmailAddress, NoLineBreaks

MIN_PASSWORD_LENGTH = 10


class LoginForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])


class _UserFields(FlaskForm):
    email = EmailField(
        "Email address", validators=[DataRequired(), Length(max=254), EmailAddress()]
    )
    name = StringField("Name", validators=[DataRequired(), Length(max=120), NoLineBreaks()])


class SetupForm(_UserFields):
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=500)],
        description=f"At least {MIN_PASSWORD_LENGTH} characters.",
    )
    confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
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
        validators=[Optional(), Length(min=MIN_PASSWORD_LENGTH, max=500)],
        description=f"At least {MIN_PASSWORD_LENGTH} characters. Blank keeps the current one.",
    )
