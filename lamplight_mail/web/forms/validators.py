"""Validators shared by every form."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from wtforms import Field, Form
from wtforms.validators import ValidationError

from lamplight_mail.headers import describe_character, header_breaking_character


class NoLineBreaks:
    """Refuse line breaks of every kind and control characters: a value that reaches a mail
    header (subject, names, addresses, reply-to) must not be able to add a header or make the
    message impossible to build."""

    message = "Line breaks are not allowed here, nor control characters: remove the {name}."

    def __call__(self, form: Form, field: Field) -> None:
        if not isinstance(field.data, str) or not field.data:
            return
        found = header_breaking_character(field.data)
        if found is not None:
            raise ValidationError(self.message.format(name=describe_character(found)))


class MaxLines:
    """At most `maximum` lines (blank ones included): counted before anything reads them."""

    def __init__(self, maximum: int, message: str) -> None:
        self.maximum = maximum
        self.message = message

    def __call__(self, form: Form, field: Field) -> None:
        if isinstance(field.data, str) and len(field.data.splitlines()) > self.maximum:
            raise ValidationError(self.message)


class EmailAddress:
    """A deliverable-looking address (syntax only: no DNS look-up from a form)."""

    def __call__(self, form: Form, field: Field) -> None:
        if not field.data:
            return
        try:
            result = validate_email(field.data, check_deliverability=False)
        except EmailNotValidError as error:
            raise ValidationError(str(error)) from None
        field.data = result.normalized


def normalise_email(address: str) -> str:
    return address.strip().lower()
