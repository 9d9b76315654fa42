"""Building the email itself with the standard library: one recipient per message."""

from __future__ import annotations

import email.policy
import uuid
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

# SMTP wants CRLF line ends and folded headers; UTF-8 headers are encoded by the policy.
SMTP_POLICY = email.policy.SMTP


class HeaderInjection(ValueError):
    """A value meant for a header held a line break."""


def _clean(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjection("line breaks are not allowed in a mail header")
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
    message["From"] = Address(display_name=_clean(from_name), addr_spec=_clean(from_email))
    message["To"] = Address(display_name=_clean(to_name), addr_spec=_clean(to_email))
    message["Subject"] = _clean(subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = _clean(message_id)
    message.set_content(body_text)
    if body_html:
        message.add_alternative(body_html, subtype="html")
    return message


def to_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=SMTP_POLICY)
