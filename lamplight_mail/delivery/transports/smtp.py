"""The SMTP transport: connect, secure, authenticate, deliver. No Flask, no database, no queue.

Every outcome becomes an Answer carrying the server's own answer (or a plain description of what
went wrong on the network) and its meaning, never the password.
"""

from __future__ import annotations

import contextlib
import re
import select
import smtplib
import socket
import ssl
from dataclasses import dataclass, field, replace

from lamplight_mail.delivery.transports.base import (
    Answer,
    BeforeAcceptance,
    ConnectionSettings,
    TransportFailure,
    is_loopback,
)
from lamplight_mail.models import AuthMethod, Security
from lamplight_mail.providers import AnswerKind, interpret


def _failure(
    stage: str,
    text: str,
    code: int | None = None,
    kind: AnswerKind | None = None,
    hint: str | None = None,
) -> Answer:
    """An answer that is not an acceptance, with its meaning looked up unless given."""
    interpretation = interpret(code, text)
    return Answer(kind or interpretation.kind, text, code, stage, hint or interpretation.hint)


def _tls_context() -> ssl.SSLContext:
    # The system trust store (SSL_CERT_FILE is honoured by OpenSSL), TLS 1.2 at least, as
    # Microsoft requires.
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _text(response: bytes | str) -> str:
    return response.decode("utf-8", "replace") if isinstance(response, bytes) else str(response)


def _network_failure(settings: ConnectionSettings, error: BaseException, stage: str) -> Answer:
    where = f"{settings.host}:{settings.port}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return _failure(
            "tls",
            f"certificate not trusted: {error.verify_message}",
            kind=AnswerKind.TEMPORARY,
            hint="The server's certificate could not be verified. Check the host name is the "
            "provider's own (e.g. smtp.office365.com) rather than an alias.",
        )
    if isinstance(error, ssl.SSLError):
        hint = (
            "Port 587 expects SSL type TLS (STARTTLS), not SSL."
            if settings.port == 587 and settings.security == Security.SSL
            else "The secure connection could not be set up. Check the SSL type matches the port "
            "(465: SSL, 587: TLS)."
        )
        return _failure(
            "tls", f"TLS failed: {error.reason or error}", kind=AnswerKind.TEMPORARY, hint=hint
        )
    # smtplib turns a read that timed out into SMTPServerDisconnected; the timeout is its cause.
    if isinstance(error, TimeoutError | socket.timeout) or isinstance(
        error.__context__, TimeoutError
    ):
        hint = (
            "Port 465 expects SSL type SSL (implicit TLS)."
            if settings.port == 465 and settings.security != Security.SSL
            else f"Nothing answered within {settings.timeout:g} seconds. Check the host and port, "
            "and that this server may connect out to it."
        )
        return _failure(
            stage,
            f"no answer from {where} within {settings.timeout:g} s",
            kind=AnswerKind.TEMPORARY,
            hint=hint,
        )
    if isinstance(error, ConnectionRefusedError):
        return _failure(
            "connect",
            f"connection refused by {where}",
            kind=AnswerKind.TEMPORARY,
            hint="Nothing accepts connections on that port. Check the port number.",
        )
    if isinstance(error, socket.gaierror):
        return _failure(
            "connect",
            f"host {settings.host} not found",
            kind=AnswerKind.TEMPORARY,
            hint="The host name could not be found. Check its spelling.",
        )
    if isinstance(error, smtplib.SMTPServerDisconnected):
        hint = (
            "Port 465 expects SSL type SSL (implicit TLS)."
            if settings.port == 465 and settings.security != Security.SSL
            else None
        )
        return _failure(
            stage,
            f"the server closed the connection ({error})",
            kind=AnswerKind.TEMPORARY,
            hint=hint,
        )
    return _failure(stage, f"{type(error).__name__}: {error}", kind=AnswerKind.TEMPORARY)


def _dot_stuffed(message: bytes) -> bytes:
    """The message as DATA carries it (RFC 5321 4.5.2): a leading dot doubled on every line and
    CRLF at the end; the lone dot that ends it is sent apart (see Connection.deliver)."""
    stuffed = (
        re.sub(rb"(?m)^\.", b"..", message)
        if message.startswith(b".") or b"\n." in message
        else message
    )
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed


_END_OF_DATA = b".\r\n"


@dataclass
class Connection:
    """An open, secured and authenticated SMTP session, reused for many messages: the SMTP
    Transport (see base.py)."""

    client: smtplib.SMTP
    settings: ConnectionSettings
    transcript: list[str] = field(default_factory=list)  # the server's answers, for the admin

    def deliver(
        self,
        from_address: str,
        recipients: list[str],
        message: bytes,
        before_acceptance: BeforeAcceptance | None = None,
    ) -> Answer:
        """Send one message; the answer to DATA (e.g. "250 2.0.0 OK ...") or why it did not go.

        The message goes in full, then `before_acceptance` runs, then the lone dot that ends it:
        the server cannot accept a message before its end, so the worker finishes recording
        the previous message meanwhile and no message is accepted before the one ahead of it is
        marked sent. Should `before_acceptance` raise, the connection is dropped without the dot
        (the server discards the unfinished message) and the error goes to the caller.

        Only a message that was ended and then got no answer has an unknown outcome; a
        connection that broke before the end is a plain temporary failure, to retry.
        """
        stage = "mail"
        ended = False
        try:
            refused = (
                self._envelope_pipelined(from_address, recipients)
                if self.client.has_extn("pipelining")
                else self._envelope(from_address, recipients)
            )
            if refused is not None:
                return refused
            stage = "data"
            self.client.send(_dot_stuffed(message))
        except smtplib.SMTPResponseException as error:
            return _failure(stage, _text(error.smtp_error), error.smtp_code)
        except (OSError, smtplib.SMTPException) as error:
            return _network_failure(self.settings, error, stage)
        except (UnicodeError, ValueError) as error:
            # An address or header the server cannot be given (smtplib sends commands as
            # ASCII): this message fails, and the session is left in no known state.
            self._abandon()
            return _failure(
                stage, f"the message cannot be sent: {error}", kind=AnswerKind.PERMANENT
            )
        if before_acceptance is not None:
            try:
                before_acceptance()
            except BaseException:
                self._abandon()
                raise
        if self._spoke_early():
            # It hung up (or answered) before the end: it has not taken the message.
            self._abandon()
            return _failure(
                "data",
                "the server ended the exchange before the end of the message",
                kind=AnswerKind.TEMPORARY,
            )
        try:
            self.client.send(_END_OF_DATA)
            ended = True
            code, response = self.client.getreply()
        except (OSError, smtplib.SMTPException) as error:
            failure = _network_failure(self.settings, error, stage)
            if ended:
                # Sent in full and ended, then the line went quiet: the server may have taken
                # it, and sending it again could deliver it twice.
                return replace(failure, kind=AnswerKind.UNKNOWN)
            return failure
        if code != 250:
            return _failure("data", _text(response), code)
        return Answer(AnswerKind.ACCEPTED, _text(response), code)

    def _envelope(self, from_address: str, recipients: list[str]) -> Answer | None:
        """MAIL, each RCPT and DATA, each answered before the next goes; None once the server
        waits for the message (354), else why it will not take it."""
        # Bare addresses (checked at compose and on the account form) go as they are:
        # smtplib's mail() and rcpt() would parse each again, for every message.
        code, response = self.client.docmd("MAIL", f"FROM:<{from_address}>")
        if code != 250:
            self._reset()
            return _failure("mail", _text(response), code)
        for recipient in recipients:
            code, response = self.client.docmd("RCPT", f"TO:<{recipient}>")
            if code not in (250, 251):
                self._reset()
                return _failure("rcpt", _text(response), code)
        code, response = self.client.docmd("DATA")
        if code != 354:
            self._reset()
            return _failure("data", _text(response), code)
        return None

    def _envelope_pipelined(self, from_address: str, recipients: list[str]) -> Answer | None:
        """The same in one write and one wait (RFC 2920, offered by Office 365 and Gmail among
        others): two round trips fewer a message. Every answer is read, in order, and the first
        refusal is the one reported."""
        self.client.send(
            f"MAIL FROM:<{from_address}>\r\n"
            + "".join(f"RCPT TO:<{recipient}>\r\n" for recipient in recipients)
            + "DATA\r\n"
        )
        answers = [("mail", *self.client.getreply())]
        answers += [("rcpt", *self.client.getreply()) for _ in recipients]
        code, response = self.client.getreply()
        accepted = {"mail": (250,), "rcpt": (250, 251)}
        refusal = next(
            (
                _failure(stage, _text(text), answer)
                for stage, answer, text in answers
                if answer not in accepted[stage]
            ),
            None,
        )
        if code == 354 and refusal is not None:
            # A server that wants the message after refusing its envelope: nothing can stop
            # DATA but hanging up, and the server discards an unfinished message.
            self._abandon()
        elif code != 354:
            self._reset()
            refusal = refusal or _failure("data", _text(response), code)
        return refusal

    def _spoke_early(self) -> bool:
        """Whether the server has closed the connection or said something while the message
        was still open: nothing but the end of the message should make it speak."""
        sock = self.client.sock
        if sock is None:
            return True
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)

    def _abandon(self) -> None:
        """Drop the connection without a word: mid-DATA, the server discards what it got."""
        self.client.close()

    def _reset(self) -> None:
        # A dead connection is found, and replaced, when the next message is sent.
        with contextlib.suppress(OSError, smtplib.SMTPException):
            self.client.rset()

    def close(self) -> None:
        try:
            self.client.quit()
        except (OSError, smtplib.SMTPException):
            self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(settings: ConnectionSettings, local_hostname: str | None = None) -> Connection:
    """Connect, EHLO, STARTTLS or implicit TLS as set, and AUTH. Raises TransportFailure."""
    transcript: list[str] = []
    stage = "connect"
    client: smtplib.SMTP | None = None
    try:
        # Connecting in the constructor lets smtplib verify the certificate against the host
        # name; a banner other than 220 raises SMTPConnectError.
        if settings.security == Security.SSL:
            client = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=_tls_context(),
                local_hostname=local_hostname,
            )
        else:
            client = smtplib.SMTP(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                local_hostname=local_hostname,
            )
        # The message and its final dot go as two writes (see Connection.deliver): without
        # this, Nagle's algorithm holds the dot until the server's delayed ACK of the message.
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code, response = client.ehlo()
        transcript.append(f"{code} {_text(response).splitlines()[0] if response else ''}")
        if settings.security == Security.TLS:
            stage = "tls"
            if not client.has_extn("starttls"):
                raise TransportFailure(
                    _failure(
                        "tls",
                        "the server does not offer STARTTLS",
                        kind=AnswerKind.PAUSE_ACCOUNT,
                        hint="This server cannot secure the connection on this port. Check the "
                        "port, or the SSL type.",
                    )
                )
            code, response = client.starttls(context=_tls_context())
            transcript.append(f"{code} {_text(response)}")
            client.ehlo()
        if (
            settings.auth_method != AuthMethod.NONE
            and settings.security == Security.NONE
            and not is_loopback(settings.host)
        ):
            # Also for accounts saved before the forms refused this: a password or token never
            # crosses a network unencrypted.
            raise TransportFailure(
                _failure(
                    "auth",
                    "refused to sign in over an unencrypted connection",
                    kind=AnswerKind.PAUSE_ACCOUNT,
                    hint="Set the SSL type to TLS (port 587) or SSL (port 465): the password "
                    "would otherwise cross the network readable by anyone on the way.",
                )
            )
        if settings.auth_method == AuthMethod.OAUTH2:
            stage = "auth"
            transcript.append(_xoauth2(client, settings))
        elif settings.auth_method != AuthMethod.NONE:
            stage = "auth"
            if not settings.password:
                raise TransportFailure(
                    _failure(
                        "auth",
                        "no password is stored for this account",
                        kind=AnswerKind.PAUSE_ACCOUNT,
                        hint="Enter the account's (app) password.",
                    )
                )
            client.user, client.password = settings.username, settings.password
            mechanism, method = (
                ("LOGIN", client.auth_login)
                if settings.auth_method == AuthMethod.LOGIN
                else ("PLAIN", client.auth_plain)
            )
            code, response = client.auth(mechanism, method, initial_response_ok=True)
            client.password = ""  # nothing keeps the secret longer than the handshake
            transcript.append(f"{code} {_text(response)}")
    except TransportFailure:
        _discard(client)
        raise
    except smtplib.SMTPAuthenticationError as error:
        _discard(client)
        raise TransportFailure(_failure("auth", _text(error.smtp_error), error.smtp_code)) from None
    except smtplib.SMTPNotSupportedError as error:
        _discard(client)
        raise TransportFailure(
            _failure(
                stage,
                str(error),
                kind=AnswerKind.PAUSE_ACCOUNT,
                hint="The server does not offer that. Check the SSL type and authentication "
                "settings.",
            )
        ) from None
    except smtplib.SMTPResponseException as error:
        _discard(client)
        raise TransportFailure(_failure(stage, _text(error.smtp_error), error.smtp_code)) from None
    except (OSError, smtplib.SMTPException) as error:
        _discard(client)
        raise TransportFailure(_network_failure(settings, error, stage)) from None
    return Connection(client=client, settings=settings, transcript=transcript)


OAUTH_REFUSED_HINT = (
    "The mailbox refused the OAuth 2.0 sign-in. Check that Authenticated SMTP is on for the "
    "mailbox (Microsoft 365 admin centre: Users > Mail > Manage email apps), that the username "
    "is the mailbox's own address, and that the app has the SMTP.Send permission (or, sending "
    "as the app itself, SMTP.SendAsApp with the Exchange service principal and mailbox "
    "permission). Where SMTP AUTH cannot be switched on, send through Microsoft Graph instead."
)


def _xoauth2(client: smtplib.SMTP, settings: ConnectionSettings) -> str:
    """AUTH XOAUTH2 with a token from the account's token source; a refused token is exchanged
    for a fresh one once (it may have been revoked or have expired early), and a second refusal
    is the mailbox's answer. Returns the server's 235 answer."""
    assert settings.token_source is not None, "an OAuth 2.0 account needs a token source"
    token = settings.token_source(None)
    try:
        code, response = _auth_xoauth2(client, settings.username, token)
    except smtplib.SMTPAuthenticationError as error:
        if error.smtp_code != 535:
            raise _oauth_refused(error) from None
        try:
            code, response = _auth_xoauth2(client, settings.username, settings.token_source(token))
        except smtplib.SMTPAuthenticationError as again:
            raise _oauth_refused(again) from None
    return f"{code} {_text(response)}"


def _auth_xoauth2(client: smtplib.SMTP, mailbox: str, token: str) -> tuple[int, bytes]:
    """The SASL string of PROVIDERS.md: base64("user=" + mailbox + "\x01auth=Bearer " +
    token + "\x01\x01"); smtplib does the base64."""
    sasl = f"user={mailbox}\x01auth=Bearer {token}\x01\x01"

    def respond(challenge: bytes | None = None) -> str:
        # A 334 challenge after the initial response carries the server's error (JSON, from
        # Google): an empty reply ends the exchange so the server gives its 5xx answer.
        return sasl if challenge is None else ""

    return client.auth("XOAUTH2", respond, initial_response_ok=True)


def _oauth_refused(error: smtplib.SMTPAuthenticationError) -> TransportFailure:
    answer = _failure("auth", _text(error.smtp_error), error.smtp_code)
    if answer.kind == AnswerKind.PAUSE_ACCOUNT and "5.7.139" not in answer.text:
        # The generic hint speaks of passwords; a 5.7.139 hint (SMTP AUTH off) stays.
        answer = replace(answer, hint=OAUTH_REFUSED_HINT)
    return TransportFailure(answer)


def _discard(client: smtplib.SMTP | None) -> None:
    if client is not None:
        client.close()
