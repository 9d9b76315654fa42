"""The seam between the job and a mail service: open for an account, deliver one message at a
time, close; every outcome an Answer (see base.py). SMTP (a password, or OAuth 2.0 with AUTH
XOAUTH2) and Microsoft Graph sendMail (OAuth 2.0)."""

from __future__ import annotations

from lamplight_mail.delivery.transports import graph, smtp
from lamplight_mail.delivery.transports.base import ConnectionSettings, Transport


def open_transport(settings: ConnectionSettings) -> Transport:
    """Connect, secure and sign in as the settings say. Raises TransportFailure."""
    if settings.transport == "graph":
        return graph.connect(settings)
    return smtp.connect(settings)
