"""Real SMTP servers for the tests: aiosmtpd on 127.0.0.1, with STARTTLS, implicit TLS and AUTH.

A server records what it received (envelope, parsed message, arrival time) and what it was asked,
and can be told to answer a recipient or a login with a chosen SMTP reply, or to be slow.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

if TYPE_CHECKING:
    import trustme


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    at: float  # time.time() on arrival
    # When the worker's limiter can have reserved this message: after the server's last word
    # on this connection before it (signed in, or the previous message answered), and before
    # its MAIL FROM. Load on the machine widens neither end.
    reserved_between: tuple[float, float] = (0.0, 0.0)


@dataclass
class Recorder:
    """Everything the server saw, safe to read from the test thread."""

    credentials: dict[str, str] = field(default_factory=dict)
    messages: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    open_peers: set[tuple] = field(default_factory=set)
    connections_total: int = 0
    max_concurrent_connections: int = 0
    # recipient -> queue of replies for its next RCPT/DATA ("250 ..." or None means accept)
    scripted_replies: dict[str, deque[str | None]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    # Offered in EHLO, as Office 365 and Gmail offer it: clients may send MAIL, RCPT and DATA
    # in one go (RFC 2920).
    pipelining: bool = False
    # address -> the reply refusing it at MAIL FROM or RCPT TO (else accepted)
    refused_addresses: dict[str, str] = field(default_factory=dict)
    # answer DATA with 354 even when no recipient was accepted, as a broken server might
    data_without_recipients: bool = False
    # how many MAIL commands came with their RCPT and DATA already behind them (pipelined)
    pipelined_envelopes: int = 0
    auth_reply: str | None = None  # when set, every AUTH is refused with this reply
    starttls_reply: str | None = None  # when set, STARTTLS is refused with this reply
    data_delay_seconds: float = 0.0
    # recipient -> how many more times the connection drops in the middle of its DATA
    drops_in_data: dict[str, int] = field(default_factory=dict)
    # recipients whose message, once complete, gets no answer until stalls_released is set
    stalled_after_data: set[str] = field(default_factory=set)
    stalls_released: threading.Event = field(default_factory=threading.Event)
    # while cleared, every message waits after its final dot, unanswered (see hold/release)
    gate: threading.Event = field(default_factory=threading.Event)
    probe_peer: tuple | None = None  # the controller's readiness probe, never counted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.set()

    def hold(self) -> None:
        """Answer no message until release(): lets a test see what happens meanwhile (how many
        connections open, what is recorded) without racing the server."""
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def open_connections(self) -> int:
        with self.lock:
            return len(self.open_peers)

    def drop_in_data(self, recipient: str, times: int = 1) -> None:
        """The next `times` DATA carrying `recipient`: 354, then the connection closed before
        the message is ended, as a server or network failing mid-message would."""
        with self.lock:
            self.drops_in_data[recipient.lower()] = times

    def stall_after_data(self, recipient: str) -> None:
        """Receive the message carrying `recipient` in full, then never answer (until
        stalls_released is set): the client cannot know whether it was accepted."""
        with self.lock:
            self.stalled_after_data.add(recipient.lower())

    def reply_for(self, recipient: str, *replies: str | None) -> None:
        """Answer the next DATA carrying `recipient` with `replies` in turn, then accept."""
        with self.lock:
            self.scripted_replies[recipient.lower()].extend(replies)

    def recipients(self) -> list[str]:
        with self.lock:
            return [rcpt for item in self.messages for rcpt in item.rcpt_tos]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        return wait_for_messages(self.messages, self.lock, count, timeout, "the server")


_Message = TypeVar("_Message")


def wait_for_messages(
    messages: list[_Message], lock: threading.Lock, count: int, timeout: float, server: str
) -> list[_Message]:
    """A stand-in server's `messages` (guarded by `lock`) once `count` have arrived; fails the
    test after `timeout` seconds saying how many did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with lock:
            if len(messages) >= count:
                return list(messages)
        time.sleep(0.05)
    with lock:
        raise AssertionError(f"expected {count} messages, {server} received {len(messages)}")


class _Handler:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        if self.recorder.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        refusal = self.recorder.refused_addresses.get(address.lower())
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        refusal = self.recorder.refused_addresses.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.recorder.data_delay_seconds:
            await asyncio.sleep(self.recorder.data_delay_seconds)
        while not self.recorder.gate.is_set():
            await asyncio.sleep(0.02)
        with self.recorder.lock:
            stalled = self.recorder.stalled_after_data & {r.lower() for r in envelope.rcpt_tos}
            self.recorder.stalled_after_data -= stalled  # once: a retry would be answered
        if stalled:
            while not self.recorder.stalls_released.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 Too late"  # the client has given up by now
        with self.recorder.lock:
            for rcpt in envelope.rcpt_tos:
                queue = self.recorder.scripted_replies.get(rcpt.lower())
                if queue:
                    reply = queue.popleft()
                    if reply is not None:
                        return reply
            raw = envelope.original_content or envelope.content
            self.recorder.messages.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=email.message_from_bytes(raw, policy=email.policy.default),
                    raw=raw,
                    at=time.time(),
                    reserved_between=server.reserved_between,
                )
            )
        server.last_word_at = time.time()  # before the answer goes out
        return "250 2.0.0 OK queued"


class _TrackingSMTP(SMTP):
    """Counts open connections so tests can check a connection cap."""

    def __init__(self, *args, recorder: Recorder, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._recorder = recorder

    def connection_made(self, transport) -> None:
        # Called again on the same peer after STARTTLS: count clients, not handshakes.
        peer = transport.get_extra_info("peername")
        recorder = self._recorder
        with recorder.lock:
            if recorder.probe_peer is None:
                # The first connection is always the controller's own readiness probe (start()
                # returns only after it): never a client, however slowly it goes away.
                recorder.probe_peer = peer
            elif peer not in recorder.open_peers:
                recorder.open_peers.add(peer)
                recorder.connections_total += 1
                recorder.max_concurrent_connections = max(
                    recorder.max_concurrent_connections, len(recorder.open_peers)
                )
        self._peer = peer
        if not hasattr(self, "last_word_at"):  # not again after STARTTLS
            self.last_word_at = time.time()
            self.reserved_between = (0.0, 0.0)
        super().connection_made(transport)

    async def smtp_MAIL(self, arg: str) -> None:
        self.reserved_between = (self.last_word_at, time.time())
        # What the client sent after MAIL without waiting for its answer.
        sent_ahead = bytes(self._reader._buffer)
        if b"RCPT TO:" in sent_ahead and b"DATA\r\n" in sent_ahead:
            with self._recorder.lock:
                self._recorder.pipelined_envelopes += 1
        await super().smtp_MAIL(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        refusal = self._recorder.starttls_reply
        if refusal is not None:
            await self.push(refusal)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_DATA(self, arg: str) -> None:
        recorder = self._recorder
        if recorder.data_without_recipients and self.envelope and not self.envelope.rcpt_tos:
            self.envelope.rcpt_tos.append("nobody@example.org")
        with recorder.lock:
            rcpts = [r.lower() for r in (self.envelope.rcpt_tos if self.envelope else [])]
            dropping = next((r for r in rcpts if recorder.drops_in_data.get(r)), None)
            if dropping:
                recorder.drops_in_data[dropping] -= 1
        if not dropping:
            await super().smtp_DATA(arg)
            return
        # The 354 and the end of the connection leave in one segment (corked, then shut): the
        # client reads them together, so it knows the connection is gone before it could end
        # the message, however the machine schedules the two sides.
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        sock.shutdown(socket.SHUT_RDWR)
        self.transport.close()

    def connection_lost(self, error) -> None:
        with self._recorder.lock:
            self._recorder.open_peers.discard(self._peer)
        super().connection_lost(error)


class _Controller(Controller):
    """Serves on a socket bound before it starts: the port is ours from the moment it is
    chosen, so no other process can take it between choosing and listening."""

    def __init__(
        self, recorder: Recorder, handler: _Handler, *, sock: socket.socket, **kwargs
    ) -> None:
        self.recorder = recorder
        self._sock = sock
        super().__init__(
            handler,
            hostname="127.0.0.1",
            port=sock.getsockname()[1],
            **kwargs,
        )

    def factory(self) -> SMTP:
        return _TrackingSMTP(self.handler, recorder=self.recorder, **self.SMTP_kwargs)

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


def bound_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound on 127.0.0.1 (port 0: any free port), not yet listening. Until it
    listens, a connection to its port is refused, and no other process can take the port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def free_port() -> int:
    """A port free right now, for a child process that binds it itself (`flask run`): another
    process could take it first, so prefer bound_socket wherever a socket can be handed over."""
    with bound_socket() as probe:
        return probe.getsockname()[1]


@dataclass
class SMTPServer:
    host: str
    port: int
    recorder: Recorder
    controller: Controller

    def stop(self) -> None:
        self.controller.stop()


def server_context(tls_authority: trustme.CA) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for 127.0.0.1 and localhost issued by
    `tls_authority` (the test CA the clients trust)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def start_server(
    *,
    mode: str,
    server_context: ssl.SSLContext | None = None,
    credentials: dict[str, str] | None = None,
    port: int | None = None,
    handler_class: type[_Handler] | None = None,
    handler_options: dict | None = None,
) -> SMTPServer:
    """Start a server. mode: "starttls" (STARTTLS and AUTH required), "ssl" (implicit TLS, AUTH
    required) or "plain" (no TLS, no AUTH, like a local relay). A handler class may add AUTH
    mechanisms (tests/oauth_servers.py adds XOAUTH2)."""
    recorder = Recorder(credentials=dict(credentials or {}))

    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        with recorder.lock:
            refusal = recorder.auth_reply
            ok = refusal is None and recorder.credentials.get(login) == password
            recorder.logins.append((login, ok))
        if ok:
            server.last_word_at = time.time()  # before the answer goes out
            return AuthResult(success=True)
        return AuthResult(
            success=False, handled=False, message=refusal or "535 5.7.3 Authentication unsuccessful"
        )

    kwargs: dict = {}
    if mode == "starttls":
        recorder.pipelining = True  # as Office 365 offers it
        kwargs.update(
            tls_context=server_context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticate,
        )
    elif mode == "ssl":
        kwargs.update(
            ssl_context=server_context,
            auth_required=True,
            auth_require_tls=False,
            authenticator=authenticate,
        )
    elif mode != "plain":
        raise ValueError(mode)
    handler = (handler_class or _Handler)(recorder, **(handler_options or {}))
    controller = _Controller(recorder, handler, sock=bound_socket(port or 0), **kwargs)
    controller.start()
    return SMTPServer(
        host="127.0.0.1", port=controller.port, recorder=recorder, controller=controller
    )


@contextmanager
def serving(
    mode: str, tls_authority: trustme.CA, credentials: dict[str, str]
) -> Iterator[SMTPServer]:
    """A server as the suite's fixtures make it (its certificate from `tls_authority`, which the
    tests trust), stopped on leaving."""
    server = start_server(
        mode=mode, server_context=server_context(tls_authority), credentials=credentials
    )
    try:
        yield server
    finally:
        server.stop()
