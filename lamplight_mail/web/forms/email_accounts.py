"""Email account forms: the single account, operators' accounts, an operator's own password."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import (
    BooleanField,
    EmailField,
    Field,
    Form,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import PasswordInput

from lamplight_mail.accounts.editing import (
    AccountValues,
    PasswordAction,
    PasswordChange,
    changed_connection_fields,
    clear_text_auth_refused,
    port_warning,
)
from lamplight_mail.models import AuthMethod, EmailAccount, OAuthGrant, Security, Transport, User
from lamplight_mail.providers import CUSTOM, PRESETS, PROVIDER_CHOICES
from lamplight_mail.web.forms.validators import EmailAddress, NoLineBreaks

MAX_PASSWORD_LENGTH = 500
DEFAULT_CONNECTION_CAP = 3


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class WriteOnlyPasswordInput(PasswordInput):
    """A password input with no value attribute at all: a stored secret never travels back to
    the browser, and `autocomplete=new-password` keeps password managers from slipping the
    admin's own Lamplight password into an SMTP account."""

    def __init__(self) -> None:
        super().__init__(hide_value=False)  # hiding renders value="", still an attribute

    def __call__(self, field: Field, **kwargs: Any) -> Markup:
        kwargs.setdefault("autocomplete", "new-password")
        kwargs["value"] = False  # html_params leaves False attributes out
        return super().__call__(field, **kwargs)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class HostName:
    """A host name or an IP address, nothing around it: no scheme, no port, no path."""

    def __call__(self, form: Form, field: Field) -> None:
        host = field.data
        if not host:
            return
        if "://" in host:
            raise ValidationError(
                "Enter the host name only, without smtp:// or https:// in front of it."
            )
        if any(character.isspace() for character in host):
            raise ValidationError("A host name cannot contain spaces.")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return
        if ":" in host:
            raise ValidationError("Put the port number in the Port field, not after the host name.")
        labels = host.removesuffix(".").split(".")
        if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise ValidationError("Enter a host name such as smtp.office365.com, or an IP address.")


def _and_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


AUTH_CHOICES = _choices(
    [
        (AuthMethod.LOGIN.value, "Login"),
        (AuthMethod.PLAIN.value, "Plain"),
        (AuthMethod.NONE.value, "None (a relay that does not ask for a password)"),
        (AuthMethod.OAUTH2.value, "OAuth 2.0 (modern authentication)"),
    ]
)
GRANT_CHOICES = _choices(
    [
        (
            OAuthGrant.DELEGATED.value,
            "Someone signs in to the mailbox (Sign in with Microsoft or Google)",
        ),
        (OAuthGrant.APP.value, "The app itself, nobody signs in (Microsoft, single account only)"),
    ]
)
TRANSPORT_CHOICES = _choices(
    [
        (Transport.SMTP.value, "SMTP (AUTH XOAUTH2)"),
        (Transport.GRAPH.value, "Microsoft Graph (works where SMTP AUTH is switched off)"),
    ]
)
# Providers whose identity platform OAuth 2.0 accounts sign in with.
MICROSOFT_PROVIDERS = ("office365", "outlook")
OAUTH_PROVIDERS = (*MICROSOFT_PROVIDERS, "gmail")
SECURITY_CHOICES = _choices(
    [
        (Security.TLS.value, "TLS (STARTTLS, usually port 587)"),
        (Security.SSL.value, "SSL (implicit TLS, usually port 465)"),
        (Security.NONE.value, "None (unencrypted: local relays only)"),
    ]
)
# The fields a preset fills, in the form's names.
PRESET_FIELDS = (
    "host",
    "port",
    "auth_method",
    "security",
    "daily_limit",
    "per_minute_limit",
    "max_recipients",
    "connection_cap",
)


def preset_values(provider: str) -> dict[str, str | int] | None:
    preset = PRESETS.get(provider)
    if preset is None:
        return None
    return {name: getattr(preset, name) for name in PRESET_FIELDS}


def _limit(label: str, maximum: int, description: str) -> IntegerField:
    return IntegerField(
        label,
        validators=[
            Optional(),
            NumberRange(min=1, max=maximum, message=f"Enter a whole number from 1 to {maximum:,}."),
        ],
        description=description,
    )


class AccountForm(FlaskForm):
    """The fields every account has, for a new account (`account=None`) or an existing one."""

    provider = SelectField(
        "Provider",
        choices=_choices(PROVIDER_CHOICES),
        default="office365",
        description="A preset fills in the server settings and the provider's limits; you can "
        "still change any of them.",
    )
    fill_preset = SubmitField("Fill in the preset")
    host = StringField(
        "Host name",
        validators=[Optional(), Length(max=253), NoLineBreaks(), HostName()],
        filters=[_strip],
        description="For Office 365: smtp.office365.com. Left blank, the preset's host is used.",
    )
    port = IntegerField(
        "Port",
        validators=[
            Optional(),
            NumberRange(min=1, max=65535, message="Enter a port number from 1 to 65,535."),
        ],
        description="587 for TLS (STARTTLS), 465 for SSL. Left blank, the preset's port is used.",
    )
    auth_method = SelectField("Authentication", choices=AUTH_CHOICES, default="login")
    oauth_grant = SelectField(
        "OAuth 2.0 sign-in",
        choices=GRANT_CHOICES,
        default=OAuthGrant.DELEGATED.value,
        validate_choice=False,  # checked with OAuth 2.0 only (see _validate_oauth)
        description="With OAuth 2.0 only. Someone signing in is the usual way; the app itself "
        "needs an Exchange Online permission for the app (see OAuth apps).",
    )
    transport = SelectField(
        "Send through",
        choices=TRANSPORT_CHOICES,
        default=Transport.SMTP.value,
        validate_choice=False,
        description="With OAuth 2.0 only. Microsoft Graph works for Microsoft 365 tenants where "
        "SMTP AUTH is off (Security Defaults, tenants created after December 2026).",
    )
    security = SelectField("SSL type", choices=SECURITY_CHOICES, default="tls")
    username = StringField(
        "Username",
        validators=[Length(max=254), NoLineBreaks()],
        filters=[_strip],
        description="Usually the full email address of the mailbox.",
    )
    password_action = SelectField("Password", validate_choice=False)
    password = PasswordField(
        "New password",
        widget=WriteOnlyPasswordInput(),
        validators=[Length(max=MAX_PASSWORD_LENGTH), NoLineBreaks()],
        description="With two-factor authentication on, an app password (see below). It is "
        "stored encrypted and never shown again, so after a correction you type it again.",
    )
    from_email = EmailField(
        "From address",
        validators=[
            DataRequired("Enter the address recipients see."),
            Length(max=254),
            NoLineBreaks(),
            EmailAddress(),
        ],
        filters=[_strip],
        description="The address recipients see; for Office 365, the mailbox's own address.",
    )
    from_name = StringField(
        "From name",
        validators=[Length(max=120), NoLineBreaks()],
        filters=[_strip],
        description="The name recipients see, e.g. your organisation's name.",
    )
    daily_limit = _limit(
        "Recipients per 24 hours",
        1_000_000,
        "Every recipient of every message counts, over a rolling 24 hours (see the provider's "
        "limits above).",
    )
    per_minute_limit = _limit(
        "Messages per minute", 10_000, "Office 365 delays mail sent faster than 30 a minute."
    )
    max_recipients = _limit(
        "Recipients per message", 10_000, "Office 365 and Outlook.com allow 500, Gmail 100."
    )
    connection_cap = _limit(
        "Connections at once", 20, "Office 365 refuses a fourth connection to one mailbox."
    )
    reserve_percent = IntegerField(
        "Share kept for Outlook (%)",
        default=0,
        validators=[
            Optional(),
            NumberRange(min=0, max=50, message="Enter a whole number from 0 to 50."),
        ],
        description="Share of the daily limit kept free for mail sent from Outlook itself "
        "through the same mailbox.",
    )

    def __init__(self, *args: Any, account: EmailAccount | None = None, **kwargs: Any) -> None:
        super().__init__(*args, obj=account, **kwargs)
        self.account = account
        self.is_new = account is None
        self.has_password = account is not None and account.has_password
        if account is None and not self.is_submitted():
            self.fill_from_preset()  # a new form starts from the default provider's settings
        self.password_action.choices = _choices(self._password_choices())
        if not self.password_action.raw_data:
            self.password_action.data = self._initial_password_action().value

    # --- the password: write-only, replaced only on purpose --------------------------------

    def _password_choices(self) -> list[tuple[str, str]]:
        if self.has_password:
            return [
                (PasswordAction.KEEP.value, "Keep the stored password"),
                (PasswordAction.REPLACE.value, "Replace it with the new password typed below"),
                (PasswordAction.REMOVE.value, "Remove the stored password"),
            ]
        return [(PasswordAction.REPLACE.value, "Use the password typed below")]

    def _initial_password_action(self) -> PasswordAction:
        """What the control shows before anyone chooses."""
        return PasswordAction.KEEP if self.has_password else PasswordAction.REPLACE

    def _unchosen_password_action(self) -> PasswordAction:
        """A form posted without the control (as the contract allows): a typed password
        replaces the stored one, a blank one keeps it."""
        if self.password.data:
            return PasswordAction.REPLACE
        return self._initial_password_action()

    @property
    def offers_password_choice(self) -> bool:
        return len(self.password_action.choices) > 1

    def _password_action(self) -> PasswordAction:
        allowed = [value for value, _label in self._password_choices()]
        if self.password_action.raw_data and self.password_action.data in allowed:
            return PasswordAction(self.password_action.data)
        return self._unchosen_password_action()

    def password_change(self) -> PasswordChange:
        """What to do with the stored password; meaningful once the form has validated."""
        action = self._password_action()
        if action == PasswordAction.REPLACE:
            return PasswordChange(action, self.password.data)
        return PasswordChange(action)

    def _validate_password(self) -> bool:
        no_password = (AuthMethod.NONE.value, AuthMethod.OAUTH2.value)
        if (
            self.auth_method.data == AuthMethod.NONE.value
            and self.has_password
            and self._password_action() != PasswordAction.REMOVE
        ):
            # Dropping a secret nobody typed again is not done silently: ask.
            self.auth_method.errors.append(
                "Authentication none sends without signing in, so saving removes the stored "
                "password. To go on, under Password choose “Remove the stored password”."
            )
            return False
        if self.auth_method.data in no_password or self.password.errors:
            return not self.password.errors
        action = self._password_action()
        typed = bool(self.password.data)
        if action == PasswordAction.REPLACE and not typed and not self.has_password:
            self.password.errors.append(self._missing_password_message())
        elif action == PasswordAction.REPLACE and not typed:
            self.password.errors.append("Type the new password, or keep the stored one.")
        elif action != PasswordAction.REPLACE and typed:
            replace = dict(self._password_choices())[PasswordAction.REPLACE.value]
            self.password.errors.append(
                f"You typed a password without choosing to use it: under Password choose "
                f"“{replace}”, or clear this field."
            )
        return not self.password.errors

    def _missing_password_message(self) -> str:
        return "Type the account's password (with two-factor authentication, an app password)."

    # --- presets ---------------------------------------------------------------------------

    def fill_from_preset(self) -> bool:
        """Put the chosen preset's values in its fields, leaving every other field as typed."""
        values = preset_values(self.provider.data)
        if values is None:
            return False
        for name, value in values.items():
            self[name].data = value
            self[name].raw_data = None  # an IntegerField shows raw input before its data
        return True

    def port_warning(self) -> str | None:
        try:
            security = Security(self.security.data)
            auth_method = AuthMethod(self.auth_method.data)
        except ValueError:
            return None
        return (
            None if self.port.data is None else port_warning(self.port.data, security, auth_method)
        )

    # --- validation and values -------------------------------------------------------------

    def save_options(self) -> dict[str, Any]:
        """What the kind of account adds to its values (see accounts.save_account)."""
        return {}

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        if self.provider.data == CUSTOM:
            for name in ("host", "port", "daily_limit", "per_minute_limit", "max_recipients"):
                field = self[name]
                if field.data in (None, "") and not field.errors:
                    field.errors.append(
                        f"Enter the {field.label.text.lower()}, or choose a provider's preset."
                    )
                    valid = False
        valid = self._validate_oauth() and valid
        if valid:
            valid = self._validate_where_the_password_goes()
        return self._validate_password() and valid

    # --- modern authentication ---------------------------------------------------------------

    @property
    def allows_app_grant(self) -> bool:
        """Only the single account may send as the app itself (no person behind it)."""
        return False

    def _validate_oauth(self) -> bool:
        if self.auth_method.data != AuthMethod.OAUTH2.value:
            return True
        if self.provider.data not in OAUTH_PROVIDERS:
            self.auth_method.errors.append(
                "OAuth 2.0 needs a provider that offers it: choose Office 365, Outlook.com or "
                "Gmail as the provider."
            )
            return False
        microsoft = self.provider.data in MICROSOFT_PROVIDERS
        if self.oauth_grant.data not in set(OAuthGrant):
            self.oauth_grant.errors.append("Choose how the account signs in.")
        elif self.oauth_grant.data == OAuthGrant.APP.value and not (
            microsoft and self.allows_app_grant
        ):
            self.oauth_grant.errors.append(
                "Only the single account, with Microsoft, can send as the app itself: choose "
                "“Someone signs in”."
            )
        if self.transport.data not in set(Transport):
            self.transport.errors.append("Choose how mail is sent.")
        elif self.transport.data == Transport.GRAPH.value and not microsoft:
            self.transport.errors.append(
                "Microsoft Graph is for Microsoft accounts: choose SMTP for Gmail."
            )
        return not (self.oauth_grant.errors or self.transport.errors)

    def _validate_where_the_password_goes(self) -> bool:
        """No password in clear over a network, and none sent to a server it was not typed
        for: changing the host, port, security, authentication or username needs it again."""
        values = self.account_values()
        refused = clear_text_auth_refused(values.host, values.security, values.auth_method)
        if refused:
            self.security.errors.append(refused)
            return False
        if (
            self.account is None
            or not self.has_password
            or not values.auth_method.sends_password
            or self._password_action() != PasswordAction.KEEP
        ):
            return True
        changed = changed_connection_fields(self.account, values)
        if changed:
            labels = [self[name].label.text.lower() for name in changed]
            self.password.errors.append(
                f"You changed the {_and_list(labels)}: type the account's password again "
                "(and choose to use it). The stored password is only ever sent to the server "
                "it was typed for."
            )
            return False
        return True

    def account_values(self) -> AccountValues:
        """The account's settings: blank preset fields take the preset's values."""
        preset = preset_values(self.provider.data) or {}

        def value(name: str, fallback: Any = None) -> Any:
            data = self[name].data
            return preset.get(name, fallback) if data in (None, "") else data

        return AccountValues(
            provider=self.provider.data,
            host=value("host"),
            port=value("port"),
            auth_method=AuthMethod(self.auth_method.data),
            security=Security(self.security.data),
            username=self.username.data or "",
            from_email=self.from_email.data,
            from_name=self.from_name.data or "",
            daily_limit=value("daily_limit"),
            per_minute_limit=value("per_minute_limit"),
            max_recipients=value("max_recipients"),
            connection_cap=value("connection_cap", DEFAULT_CONNECTION_CAP),
            reserve_percent=self.reserve_percent.data or 0,
            **self._oauth_values(),
        )

    def _oauth_values(self) -> dict[str, Any]:
        if self.auth_method.data != AuthMethod.OAUTH2.value:
            return {"oauth_grant": None, "transport": Transport.SMTP}
        return {
            "oauth_grant": OAuthGrant(self.oauth_grant.data),
            "transport": Transport(self.transport.data),
        }


class SystemAccountForm(AccountForm):
    default_for_operators = BooleanField(
        "Use this account for everyone without an account of their own",
        description="Operators (and admins) with no individual account, or whose own account is "
        "not ready, can then still send email through this one.",
    )

    def save_options(self) -> dict[str, Any]:
        return {"default_for_operators": self.default_for_operators.data}

    @property
    def allows_app_grant(self) -> bool:
        return True


class OperatorAccountForm(AccountForm):
    operator_id = SelectField(
        "Who sends through this account",
        coerce=int,
        validators=[DataRequired(message="Choose who sends through this account.")],
        description="Only people who have no individual account yet are listed.",
    )

    def __init__(
        self, *args: Any, account: EmailAccount | None = None, candidates: list[User], **kwargs: Any
    ) -> None:
        super().__init__(*args, account=account, **kwargs)
        if account is not None and account.owner is not None and not self.is_submitted():
            self.operator_id.data = account.owner_id
        people = ([account.owner] if account is not None and account.owner else []) + candidates
        self._people = {user.id: user for user in people}
        self.operator_id.choices = [
            SelectChoice(str(user.id), f"{user.name} ({user.email})") for user in people
        ]

    def save_options(self) -> dict[str, Any]:
        return {"owner": self._people[self.operator_id.data]}

    def _password_choices(self) -> list[tuple[str, str]]:
        leave = (
            PasswordAction.LEAVE_TO_OPERATOR.value,
            "Leave it to the operator: they type their own password under My email account",
        )
        if self.has_password:
            return [*super()._password_choices(), leave]
        return [(PasswordAction.REPLACE.value, "Type it in now"), leave]

    def _initial_password_action(self) -> PasswordAction:
        # An account already waiting for its operator stays that way unless told otherwise.
        if not self.is_new and not self.has_password:
            return PasswordAction.LEAVE_TO_OPERATOR
        return super()._initial_password_action()

    def _unchosen_password_action(self) -> PasswordAction:
        # Posted without the control and without a password: the operator will type it.
        if not self.password.data and not self.has_password:
            return PasswordAction.LEAVE_TO_OPERATOR
        return super()._unchosen_password_action()

    def _missing_password_message(self) -> str:
        return "Type the password, or leave it to the operator to type their own."


class OwnPasswordForm(FlaskForm):
    """An operator's own account: the password is the one thing they may set."""

    password = PasswordField(
        "Password",
        widget=WriteOnlyPasswordInput(),
        validators=[
            DataRequired(message="Type the password."),
            Length(max=MAX_PASSWORD_LENGTH),
            NoLineBreaks(),
        ],
        description="With two-factor authentication on, an app password (see below). It is "
        "stored encrypted and never shown again.",
    )


class EmailCheckForm(FlaskForm):
    to = EmailField(
        "Send a test email to",
        validators=[
            DataRequired(message="Enter the address to send the test to."),
            Length(max=254),
            NoLineBreaks(),
            EmailAddress(),
        ],
        filters=[_strip],
    )
