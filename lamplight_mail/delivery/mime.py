"""Building the email itself with the standard library: one recipient per message."""

from __future__ import annotations

import email.policy
import uuid
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from lamplight_mail.headers import header_breaking_character

# SMTP wants CRLF line ends and folded headers; UTF-8 headers are encoded by the policy.
SMTP_POLICY = email.policy.SMTP


class HeaderInjection(ValueError):
    """A value meant for a header held a character that splits a line or a control
    character."""


def header_problem(value: str) -> str | None:
    """Why `value` cannot go in a mail header, or None when it can.

    Refused: every character at which str.splitlines splits (CR, LF, vertical tab, form feed,
    U+001C..U+001E, U+0085, U+2028, U+2029), on which the email package either raises or starts
    a new header line, and every other control character (tab included), which has no place in
    a subject, a name or an address. The compose form applies the same rule.
    """
    character = header_breaking_character(value)
    if character is None:
        return None
    kind = "a line break" if len(f"a{character}b".splitlines()) > 1 else "a control character"
    return f"{kind} (U+{ord(character):04X}) is not allowed in a mail header"


def clean_header(value: str) -> str:
    """`value`, or HeaderInjection with the reason it cannot go in a header."""
    problem = header_problem(value)
    if problem is not None:
        raise HeaderInjection(problem)
    return value


def new_message_id(from_email: str) -> str:
    """A globally unique Message-ID in the sender's domain, generated before the message is
    queued so a retried message keeps its identity."""
    domain = from_email.rpartition("@")[2] or "lamplight.invalid"
    return make_msgid(idstring=uuid.uuid4().hex[:12], domain=domain)


def build_message(
    *,
    from_email: str,
    from_name: str,
    to_email: str,
    to_name: str,
    subject: str,
    body_text: str,
    body_html: str | None = None,
    message_id: str,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = Address(
        display_name=clean_header(from_name), addr_spec=clean_header(from_email)
    )
    message["To"] = Address(display_name=clean_header(to_name), addr_spec=clean_header(to_email))
    message["Subject"] = clean_header(subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = clean_header(message_id)
    message.set_content(body_text)
    if body_html:
        message.add_alternative(body_html, subtype="html")
    return message


def to_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=SMTP_POLICY)
