"""The SMTP transport against real aiosmtpd servers: what they answered and received."""

from __future__ import annotations

import socket

import pytest

from lamplight_mail.delivery.transports.base import (
    LOOPBACK_NAMES,
    ConnectionSettings,
    TransportFailure,
)
from lamplight_mail.delivery.transports.smtp import connect
from lamplight_mail.models import AuthMethod, Security
from lamplight_mail.providers import AnswerKind
from tests.factories import SMTP_PASSWORD, SMTP_USER
from tests.smtp_servers import start_server


def settings(server, **overrides) -> ConnectionSettings:
    values = dict(
        host=server.host,
        port=server.port,
        security=Security.TLS,
        auth_method=AuthMethod.LOGIN,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        timeout=5,
    )
    values.update(overrides)
    return ConnectionSettings(**values)


MESSAGE = b"From: sender@charity.example\r\nTo: a@example.org\r\nSubject: Hi\r\n\r\nHello\r\n"


@pytest.mark.parametrize("auth_method", [AuthMethod.LOGIN, AuthMethod.PLAIN])
def test_starttls_then_auth_then_delivery_over_one_connection(smtp_server, auth_method):
    with connect(settings(smtp_server, auth_method=auth_method)) as connection:
        first = connection.deliver(SMTP_USER, ["a@example.org"], MESSAGE)
        connection.deliver(SMTP_USER, ["b@example.org"], MESSAGE)
    assert first.accepted
    assert str(first).startswith("250")
    assert smtp_server.recorder.recipients() == ["a@example.org", "b@example.org"]
    assert smtp_server.recorder.connections_total == 1
    assert smtp_server.recorder.logins == [(SMTP_USER, True)]


def test_implicit_tls(smtp_ssl_server):
    with connect(settings(smtp_ssl_server, security=Security.SSL)) as connection:
        connection.deliver(SMTP_USER, ["a@example.org"], MESSAGE)
    assert smtp_ssl_server.recorder.recipients() == ["a@example.org"]


def test_wrong_password_is_the_servers_answer_with_app_password_advice(smtp_server):
    with pytest.raises(TransportFailure) as caught:
        connect(settings(smtp_server, password="sign-in password"))
    failure = caught.value.answer
    assert (failure.stage, failure.code, failure.kind) == ("auth", 535, AnswerKind.PAUSE_ACCOUNT)
    assert "5.7.3" in failure.text
    assert "app password" in failure.hint
    assert "sign-in password" not in str(caught.value)


def test_authenticated_smtp_disabled_gets_the_admin_centre_advice(smtp_server):
    smtp_server.recorder.auth_reply = (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        "Tenant."
    )
    with pytest.raises(TransportFailure) as caught:
        connect(settings(smtp_server))
    assert "Authenticated SMTP" in caught.value.answer.hint


def test_untrusted_certificate_is_refused(smtp_server, monkeypatch, tmp_path):
    empty_store = tmp_path / "empty.pem"
    empty_store.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_store))
    with pytest.raises(TransportFailure) as caught:
        connect(settings(smtp_server))
    assert caught.value.answer.stage == "tls"
    assert "certificate" in caught.value.answer.text


def test_implicit_tls_against_a_starttls_port_is_explained(smtp_server):
    with pytest.raises(TransportFailure) as caught:
        connect(settings(smtp_server, security=Security.SSL, port=smtp_server.port))
    assert caught.value.answer.stage in ("connect", "tls")


def test_refused_connection_is_explained(closed_port):
    with pytest.raises(TransportFailure) as caught:
        connect(
            ConnectionSettings(
                host="127.0.0.1",
                port=closed_port,
                security=Security.NONE,
                auth_method=AuthMethod.NONE,
                username="",
                timeout=2,
            )
        )
    assert "refused" in caught.value.answer.text


def test_rejected_recipient_keeps_the_answer_and_the_connection_usable(smtp_server):
    smtp_server.recorder.reply_for("gone@example.org", "550 5.1.1 User unknown")
    with connect(settings(smtp_server)) as connection:
        refused = connection.deliver(SMTP_USER, ["gone@example.org"], MESSAGE)
        accepted = connection.deliver(SMTP_USER, ["ok@example.org"], MESSAGE)
    assert (refused.code, refused.kind, refused.accepted) == (550, AnswerKind.PERMANENT, False)
    assert "5.1.1 User unknown" in refused.text
    assert accepted.accepted
    assert smtp_server.recorder.recipients() == ["ok@example.org"]


def test_the_message_is_ended_only_after_the_callback_returns(smtp_server):
    """The worker records the previous message in the callback: the server must not have
    taken this one yet, and takes it once the callback returns."""
    seen: list[list[str]] = []
    with connect(settings(smtp_server)) as connection:
        answer = connection.deliver(
            SMTP_USER,
            ["a@example.org"],
            MESSAGE,
            before_acceptance=lambda: seen.append(smtp_server.recorder.recipients()),
        )
    assert seen == [[]]
    assert answer.accepted
    assert smtp_server.recorder.recipients() == ["a@example.org"]


def test_a_callback_that_fails_leaves_the_message_unended_and_never_accepted(smtp_server):
    class RecordingFailed(Exception):
        pass

    def fail() -> None:
        raise RecordingFailed

    connection = connect(settings(smtp_server))
    with pytest.raises(RecordingFailed):
        connection.deliver(SMTP_USER, ["a@example.org"], MESSAGE, before_acceptance=fail)
    connection.close()
    with connect(settings(smtp_server)) as again:  # the server is fine; that message is gone
        assert again.deliver(SMTP_USER, ["b@example.org"], MESSAGE).accepted
    assert smtp_server.recorder.recipients() == ["b@example.org"]


def test_a_connection_dropped_before_the_end_is_temporary_and_a_silence_after_it_unknown(
    smtp_server,
):
    recorder = smtp_server.recorder
    recorder.drop_in_data("dropped@example.org")
    recorder.stall_after_data("stalled@example.org")
    with connect(settings(smtp_server)) as connection:
        dropped = connection.deliver(SMTP_USER, ["dropped@example.org"], MESSAGE)
    assert dropped.kind == AnswerKind.TEMPORARY  # it never had the whole message: retry it
    try:
        with connect(settings(smtp_server, timeout=2)) as connection:
            stalled = connection.deliver(SMTP_USER, ["stalled@example.org"], MESSAGE)
    finally:
        recorder.stalls_released.set()
    assert stalled.kind == AnswerKind.UNKNOWN  # ended, then silence: it may have arrived
    assert "within 2 s" in stalled.text


def _name_for_this_machine() -> str | None:
    """A host name (not an address, not "localhost") that resolves to this machine: the sort of
    name nobody could prove is local without a DNS look-up."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return None
    return name if address.startswith("127.") and name not in LOOPBACK_NAMES else None


def test_no_password_crosses_an_unencrypted_connection_to_another_host():
    """Accounts saved before the forms refused it, too: the transport itself will not sign in
    without TLS except to this machine by address or as localhost."""
    name = _name_for_this_machine()
    if name is None:
        pytest.skip("this machine's name does not resolve to a loopback address")
    relay = start_server(mode="plain")
    try:
        with pytest.raises(TransportFailure) as caught:
            connect(
                ConnectionSettings(
                    host=name,
                    port=relay.port,
                    security=Security.NONE,
                    auth_method=AuthMethod.LOGIN,
                    username=SMTP_USER,
                    password=SMTP_PASSWORD,
                    timeout=5,
                )
            )
    finally:
        relay.stop()
    answer = caught.value.answer
    assert (answer.stage, answer.kind) == ("auth", AnswerKind.PAUSE_ACCOUNT)
    assert "unencrypted" in answer.text and "TLS" in answer.hint
    assert relay.recorder.logins == []


def test_a_server_offering_pipelining_gets_the_envelope_in_one_go(smtp_server):
    with connect(settings(smtp_server)) as connection:
        for person in ("a", "b"):
            assert connection.deliver(SMTP_USER, [f"{person}@example.org"], MESSAGE).accepted
    assert smtp_server.recorder.recipients() == ["a@example.org", "b@example.org"]
    assert smtp_server.recorder.pipelined_envelopes == 2


def test_a_server_without_pipelining_gets_one_command_at_a_time(smtp_ssl_server):
    with connect(settings(smtp_ssl_server, security=Security.SSL)) as connection:
        assert connection.deliver(SMTP_USER, ["a@example.org"], MESSAGE).accepted
    assert smtp_ssl_server.recorder.recipients() == ["a@example.org"]
    assert smtp_ssl_server.recorder.pipelined_envelopes == 0


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
def test_a_refused_sender_or_recipient_is_that_messages_answer_and_the_next_one_goes(
    smtp_server, pipelining
):
    recorder = smtp_server.recorder
    recorder.pipelining = pipelining
    recorder.refused_addresses.update(
        {
            "nobody@example.org": "550 5.1.1 User unknown",
            "blocked@charity.example": "553 5.7.1 Sender address rejected",
        }
    )
    with connect(settings(smtp_server)) as connection:
        no_recipient = connection.deliver(SMTP_USER, ["nobody@example.org"], MESSAGE)
        no_sender = connection.deliver("blocked@charity.example", ["a@example.org"], MESSAGE)
        accepted = connection.deliver(SMTP_USER, ["b@example.org"], MESSAGE)
    assert (no_recipient.stage, no_recipient.code, no_recipient.kind) == (
        "rcpt",
        550,
        AnswerKind.PERMANENT,
    )
    assert "User unknown" in no_recipient.text
    assert (no_sender.stage, no_sender.code) == ("mail", 553)
    assert accepted.accepted
    assert recorder.recipients() == ["b@example.org"]
    assert recorder.connections_total == 1


def test_a_server_that_wants_the_message_after_refusing_its_recipient_gets_nothing(smtp_server):
    """Pipelined, DATA goes before the recipient's refusal is read: should the server then
    answer 354 anyway, the message is never ended (the connection is dropped), so nothing
    reaches the refused recipient, and the next message goes on a new connection."""
    recorder = smtp_server.recorder
    recorder.refused_addresses["nobody@example.org"] = "550 5.1.1 User unknown"
    recorder.data_without_recipients = True
    with connect(settings(smtp_server)) as connection:
        refused = connection.deliver(SMTP_USER, ["nobody@example.org"], MESSAGE)
    assert (refused.stage, refused.code) == ("rcpt", 550)
    with connect(settings(smtp_server)) as connection:
        assert connection.deliver(SMTP_USER, ["a@example.org"], MESSAGE).accepted
    assert recorder.recipients() == ["a@example.org"]
