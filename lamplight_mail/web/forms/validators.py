"""Validators shared by every form."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from wtforms import Field, Form
from wtforms.validators import StopValidation, ValidationError

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


# Said when a list refused for its size is not shown back.
NOT_KEPT = "The list was not kept because of its size: the box is empty."


class ListSize:
    """At most `max_characters` and `max_lines` (blank lines included), counted before anything
    reads the list; one message, for the first limit passed, with `advice`. A list refused
    for its size is not kept: megabytes put back into a text box take a browser many seconds
    to show, so the box is emptied and the message says so."""

    def __init__(self, max_characters: int, max_lines: int, advice: str) -> None:
        self.max_characters = max_characters
        self.max_lines = max_lines
        self.advice = advice

    def __call__(self, form: Form, field: Field) -> None:
        if not isinstance(field.data, str):
            return
        if len(field.data) > self.max_characters:
            too_large = f"The list is longer than {self.max_characters:,} characters."
        elif len(field.data.splitlines()) > self.max_lines:
            too_large = f"The list has more than {self.max_lines:,} lines."
        else:
            return
        field.data = ""
        raise StopValidation(f"{too_large} {self.advice} {NOT_KEPT}")


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
