"""The seam between the job and a mail service: open for an account, deliver one message at a
time, close; every outcome an Answer (see base.py). SMTP is the first transport."""

from __future__ import annotations

from lamplight_mail.delivery.transports import smtp
from lamplight_mail.delivery.transports.base import ConnectionSettings, Transport


def open_transport(settings: ConnectionSettings) -> Transport:
    """Connect, secure and sign in as the settings say. Raises TransportFailure."""
    return smtp.connect(settings)
