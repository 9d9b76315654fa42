"""Validators shared by every form."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from wtforms import Field, Form
from wtforms.validators import ValidationError


class NoLineBreaks:
    """Refuse CR and LF: a value that reaches a mail header must not be able to add one."""

    message = "Line breaks are not allowed here."

    def __call__(self, form: Form, field: Field) -> None:
        if field.data and ("\r" in field.data or "\n" in field.data):
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
