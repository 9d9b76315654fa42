"""The seam between a delivery job and a mail service (in the spirit of listmonk's messenger).

A transport is opened for one account (connect, secure, sign in), delivers one message at a time
over that session, and is closed. Every outcome is a value, an Answer: what the service said (or
what went wrong on the way) and what that means for the message and the account. The job decides
from the meaning alone, so it never needs to know which protocol carried the message.

Nothing here knows Flask, the database or the queue.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from lamplight_mail.models import AuthMethod, Security
from lamplight_mail.providers import AnswerKind

# OAuth 2.0: returns a live access token; given the token the service just refused, a fresh
# one instead. Raises TransportFailure (stage "auth") with the provider's answer when none can
# be had. The token is used for one request or one AUTH and never kept in an Answer.
TokenSource = Callable[[str | None], str]


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach and sign in to an account's mail service; the secret decrypted only for
    the length of one connection and never shown in a repr."""

    host: str
    port: int
    security: Security
    auth_method: AuthMethod
    username: str
    password: str | None = field(default=None, repr=False)
    timeout: float = 20.0
    # auth_method oauth2: where access tokens come from, and which service carries the mail.
    token_source: TokenSource | None = field(default=None, repr=False)
    transport: str = "smtp"  # smtp (AUTH XOAUTH2 with OAuth) | graph (Microsoft Graph sendMail)
    graph_url: str = ""
    graph_mailbox: str = "me"  # "me" for a person's sign-in, the mailbox for the app itself


@dataclass(frozen=True)
class Answer:
    """One outcome: the service's own answer (or a plain description of what happened on the
    network), at which stage, what it means, and advice for the admin. Safe to show and log:
    it never holds a secret."""

    kind: AnswerKind
    text: str
    code: int | None = None
    stage: str = "data"  # connect, tls, auth, mail, rcpt, data
    hint: str | None = None
    # The service asked for this many seconds' pause before sending again (HTTP Retry-After):
    # the account waits that long, its mail deferred, not failed.
    retry_after: int | None = None

    @property
    def accepted(self) -> bool:
        return self.kind == AnswerKind.ACCEPTED

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text


class TransportFailure(Exception):
    """Opening the transport failed: the Answer says why. Its message is safe to log."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        super().__init__(f"{answer.stage}: {answer}")


# Runs once the message has gone but before the service can accept it (SMTP: before the final
# dot): the job uses it to make sure the previous message's outcome is durably recorded before
# this one can be accepted. Should it raise, the message is left unfinished, never accepted.
BeforeAcceptance = Callable[[], object]


class Transport(Protocol):
    """An open, signed-in session with a mail service, reused for many messages."""

    transcript: list[str]  # the service's answers while opening, for the admin's connection test

    def deliver(
        self,
        from_address: str,
        recipients: list[str],
        message: bytes,
        before_acceptance: BeforeAcceptance | None = None,
    ) -> Answer:
        """Send one message and say what became of it; never raises for the service's answer."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Transport: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


# Opens a transport for the settings, or raises TransportFailure.
Opener = Callable[[ConnectionSettings], Transport]


# Where a secret may go over a connection without TLS: this machine only.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """This machine, by address or by its conventional names (no DNS look-up: a name that
    resolves to 127.0.0.1 today can resolve elsewhere tomorrow)."""
    host = host.strip().lower().removesuffix(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
