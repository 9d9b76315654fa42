"""The organisation's OAuth app registrations (/admin/oauth)."""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field, Form, PasswordField, StringField
from wtforms.validators import Length, ValidationError

from lamplight_mail.oauth.registration import RegistrationValues
from lamplight_mail.web.forms.email_accounts import WriteOnlyPasswordInput
from lamplight_mail.web.forms.validators import NoLineBreaks


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}")


class TenantName:
    """A directory (tenant) ID or a domain: it becomes part of a URL path."""

    def __call__(self, form: Form, field: Field) -> None:
        if field.data and not _TENANT.fullmatch(field.data):
            raise ValidationError(
                "Enter the Directory (tenant) ID, e.g. 0a1b2c3d-..., or the organisation's "
                "domain, e.g. riverside.org.uk."
            )


def _secret(label: str) -> PasswordField:
    return PasswordField(
        label,
        widget=WriteOnlyPasswordInput(),
        validators=[Length(max=500), NoLineBreaks()],
        description="Stored encrypted and never shown again; left blank, the stored one is kept.",
    )


class OAuthRegistrationForm(FlaskForm):
    microsoft_tenant = StringField(
        "Microsoft tenant",
        validators=[Length(max=100), TenantName()],
        filters=[_strip],
        description="The Directory (tenant) ID from the app registration's Overview, or your "
        "organisation's Microsoft 365 domain.",
    )
    microsoft_client_id = StringField(
        "Microsoft client id",
        validators=[Length(max=100), NoLineBreaks()],
        filters=[_strip],
        description="The Application (client) ID from the app registration's Overview.",
    )
    microsoft_client_secret = _secret("Microsoft client secret")
    google_client_id = StringField(
        "Google client id",
        validators=[Length(max=200), NoLineBreaks()],
        filters=[_strip],
        description="Ends in .apps.googleusercontent.com.",
    )
    google_client_secret = _secret("Google client secret")

    def values(self) -> RegistrationValues:
        return RegistrationValues(
            microsoft_tenant=self.microsoft_tenant.data or "",
            microsoft_client_id=self.microsoft_client_id.data or "",
            google_client_id=self.google_client_id.data or "",
            microsoft_client_secret=self.microsoft_client_secret.data or None,
            google_client_secret=self.google_client_secret.data or None,
        )
