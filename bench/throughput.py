"""Delivery throughput and compose cost, measured in one run.

`python -m bench.throughput` starts a loopback SMTP sink (aiosmtpd with STARTTLS and AUTH, in
its own process, like a real server would be) and measures:

(a) the ceiling: a bare smtplib loop over one persistent connection sending 5,000 pre-rendered
    messages;
(b) one worker process (`python worker.py --burst`) draining 5,000 queued messages for one
    account, with the account's limits set high enough not to bind;
(d) the same drain with the limiter's per-message calls taken out (bench.unmetered_worker): the
    limiter's cost is the ratio b/d (target >= 0.9);
(e) the same drain with merge fields: a subject and body that hold {first_name}, {name} and a
    CSV column, filled for each recipient: its cost is the ratio e/b (target >= 0.9);
(c) composing 10,000 recipients (outbox.create_send: the send, 10,000 message rows with their
    Message-IDs, commit, enqueue) against a bare bulk insert of the same rows, and the whole
    compose request through the web app for reference.

It prints messages per second and the ratios b/a (target >= 0.7), b/d (target >= 0.9), e/b
(target >= 0.9) and c (target <= 2); each figure is the best of three runs.
The database is a fresh SQLite file, or a fresh PostgreSQL database when BENCH_DATABASE_URL
names a server (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import trustme
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import create_engine, delete, func, insert, select, text
from sqlalchemy.engine import make_url

from lamplight_mail import create_app
from lamplight_mail.delivery import outbox
from lamplight_mail.delivery.mime import new_message_id
from lamplight_mail.delivery.send_template import SendTemplate
from lamplight_mail.dev import embedded_redis
from lamplight_mail.extensions import db
from lamplight_mail.models import (
    EmailAccount,
    Message,
    MessageStatus,
    Send,
    User,
    utcnow,
)
from lamplight_mail.recipients import Recipient
from tests.factories import PASSWORD, SMTP_PASSWORD, SMTP_USER, make_account, make_user
from tests.workers import PROJECT_ROOT, worker_command

WORKER_MESSAGES = 5_000
COMPOSE_RECIPIENTS = 10_000
REPEATS = 3  # each figure is the best of this many runs: noise on a shared machine only slows
SUBJECT = "Spring newsletter from the café"
BODY = "Dear friend,\n\n" + "We open again on Tuesday, with more places than before.\n" * 30
# The same message personalised: as long, with fields at the start, middle and end.
MERGED_SUBJECT = "Spring newsletter from the café, {first_name}"
MERGED_BODY = (
    "Dear {name},\n\n"
    + "We open again on Tuesday, with more places than before.\n" * 15
    + "Your nearest café is at {post_code}.\n"
    + "We open again on Tuesday, with more places than before.\n" * 15
    + "-- sent to {email}\n"
)


def _serve(
    port: int,
    certificate: str,
    ready: multiprocessing.Event,
    delay: float,
    control: Connection | None = None,
) -> None:
    """The sink: accepts everything after STARTTLS and AUTH, keeps nothing; answers each
    message after `delay` seconds (a real provider's time to take it). With `control`, it
    notes when it accepted each message and answers "reset" (forget them) and "span" (how
    many, the first and the last accept, in seconds of this machine's monotonic clock)."""
    import asyncio
    import logging
    import threading

    # aiosmtpd logs a warning about its own use of a deprecated attribute at every AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    accepted: list[float] = []

    class Sink:
        async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list:
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]]  # as Office 365 does

        async def handle_DATA(self, server, session, envelope) -> str:
            if delay:
                await asyncio.sleep(delay)
            accepted.append(time.monotonic())
            return "250 2.0.0 OK queued"

    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok)

    def answer_control() -> None:
        while True:
            command = control.recv()
            if command == "reset":
                accepted.clear()
                control.send(None)
            else:
                ends = (accepted[0], accepted[-1]) if accepted else (0.0, 0.0)
                control.send((len(accepted), *ends))

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate)
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticate,
    )
    controller.start()
    if control is not None:
        threading.Thread(target=answer_control, daemon=True).start()
    ready.set()
    while True:
        time.sleep(3600)


@dataclass(frozen=True)
class Span:
    """What the sink accepted: how many messages, from the first accept to the last."""

    count: int
    seconds: float

    @property
    def rate(self) -> float:
        """Messages per second between the first accept and the last (count - 1 intervals)."""
        return (self.count - 1) / self.seconds


class TimedSink:
    """A sink process that notes each accept, so a contender is timed from the first message
    the server accepted to the last: its processes' start-up and set-up are left out."""

    def __init__(self, port: int, control: Connection) -> None:
        self.port = port
        self._control = control

    def reset(self) -> None:
        self._control.send("reset")
        self._control.recv()

    def span(self) -> Span:
        self._control.send("span")
        count, first, last = self._control.recv()
        return Span(count, last - first)


@contextmanager
def timed_sink(folder: Path, delay: float = 0.0) -> Iterator[TimedSink]:
    """A sink in its own process on a free port, taking `delay` seconds a message and noting
    when it accepts each. Trusts its test CA (SSL_CERT_FILE, inherited by subprocesses)."""
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "server.pem")
    )
    os.environ["SSL_CERT_FILE"] = str(folder / "ca.pem")
    port = _free_port()
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    ours, theirs = spawn.Pipe()
    process = spawn.Process(
        target=_serve, args=(port, str(folder / "server.pem"), ready, delay, theirs)
    )
    process.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the SMTP sink did not start")
        yield TimedSink(port, ours)
    finally:
        process.terminate()
        process.join(10)


@contextmanager
def smtp_sink(folder: Path, delay: float = 0.0) -> Iterator[int]:
    """A sink in its own process on a free port, taking `delay` seconds a message; yields the
    port. Trusts its test CA."""
    with timed_sink(folder, delay) as sink:
        yield sink.port


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def database() -> Iterator[str]:
    """A fresh, empty database URL: PostgreSQL when BENCH_DATABASE_URL is set, else SQLite."""
    server = os.environ.get("BENCH_DATABASE_URL")
    if not server:
        folder = Path(tempfile.mkdtemp(prefix="lm-bench-db-"))
        try:
            yield f"sqlite:///{folder / 'bench.sqlite'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"lm_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def scratch_space(prefix: str = "lm-bench-") -> Iterator[tuple[Path, str]]:
    """A temporary folder with an embedded Redis in it (its URL), both gone on leaving."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    redis_url = embedded_redis.ensure_running(folder / "redis", persist=False)
    try:
        yield folder, redis_url
    finally:
        embedded_redis.stop(folder / "redis")
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def upgraded_app(folder: Path, url: str, redis_url: str) -> Iterator[tuple[Flask, dict[str, str]]]:
    """The app on the upgraded database, inside its context, and the workers' environment; its
    database connections closed on leaving."""
    app, env = app_and_worker_env(folder, url, redis_url)
    with app.app_context():
        upgrade()
        try:
            yield app, env
        finally:
            db.session.remove()
            db.engine.dispose()


def app_and_worker_env(folder: Path, url: str, redis_url: str) -> tuple[Flask, dict[str, str]]:
    """The bench's app on database `url`, and the environment for worker processes like it."""
    keys = Fernet.generate_key().decode()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "LAMPLIGHT_MAIL_KEYS": keys,
        "SECRET_KEY": uuid.uuid4().hex,
        "LAMPLIGHT_MAIL_INSTANCE": str(folder / "instance"),
    }
    os.environ["LAMPLIGHT_MAIL_INSTANCE"] = env["LAMPLIGHT_MAIL_INSTANCE"]
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": redis_url,
            "FERNET_KEYS": [keys],
            "SECRET_KEY": env["SECRET_KEY"],
        }
    )
    return app, env


def raw_smtplib(port: int, count: int) -> float:
    """(a) Messages per second over one connection, messages rendered beforehand."""
    template = SendTemplate(
        from_email=SMTP_USER, from_name="Riverside", subject=SUBJECT, body_text=BODY
    )
    messages = [
        (
            f"person{i}@example.org",
            template.render(f"person{i}@example.org", f"Person {i}", f"<{i}@b>"),
        )
        for i in range(count)
    ]
    client = smtplib.SMTP("127.0.0.1", port, timeout=20)
    client.ehlo()
    client.starttls(context=ssl.create_default_context())
    client.ehlo()
    client.login(SMTP_USER, SMTP_PASSWORD)
    started = time.perf_counter()
    for recipient, payload in messages:
        client.mail(SMTP_USER)
        client.rcpt(recipient)
        code, _ = client.data(payload)
        assert code == 250
    elapsed = time.perf_counter() - started
    client.quit()
    return count / elapsed


def _people(count: int) -> list[Recipient]:
    return [
        Recipient(f"person{i}@example.org", f"Pérson {i}", {"post_code": f"AB{i % 90 + 10} 1CD"})
        for i in range(count)
    ]


def _setup(port: int) -> tuple[User, EmailAccount]:
    user = make_user(name="Olive")
    # Limits on, but not binding.
    account = bench_account(port, default_for_operators=True)
    return user, account


def bench_account(port: int, **settings: Any) -> EmailAccount:
    """An account on the bench's SMTP sink (STARTTLS, AUTH LOGIN), its limits on but set high
    enough never to bind."""
    return make_account(
        host="127.0.0.1",
        port=port,
        daily_limit=10_000_000,
        per_minute_limit=10_000_000,
        **settings,
    )


WORKER = worker_command("--burst")
UNMETERED_WORKER = [sys.executable, "-m", "bench.unmetered_worker", "--burst"]


def worker_drain(
    app: Flask,
    env: dict[str, str],
    user: User,
    account: EmailAccount,
    command: list[str] = WORKER,
    *,
    merged: bool = False,
    messages: int = WORKER_MESSAGES,
) -> dict:
    """(b) One worker process draining `messages` queued messages for one account (d: run as
    `command`; e: `merged`, its subject and body personalised)."""
    people = _people(messages)
    if merged:
        send = outbox.create_send(
            user,
            account,
            people,
            MERGED_SUBJECT,
            MERGED_BODY,
            extras=outbox.Extras(merge_columns=frozenset({"post_code"})),
        )
    else:
        send = outbox.create_send(user, account, people, SUBJECT, BODY)
    # No read left open while the worker runs: on SQLite a reader's snapshot keeps the
    # worker's checkpoints from emptying the write-ahead log, which then grows with every mark
    # (72 MB here) and makes each commit's checkpoint attempt longer.
    db.session.rollback()
    started = time.perf_counter()
    worker = subprocess.run(
        command,
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    db.session.rollback()
    sent, first, last = db.session.execute(
        select(func.count(), func.min(Message.sent_at), func.max(Message.sent_at)).where(
            Message.send_id == send.id, Message.status == MessageStatus.SENT
        )
    ).one()
    if worker.returncode or sent != messages:
        raise RuntimeError(
            f"the worker sent {sent} of {messages} messages:\n{worker.stderr[-3000:]}"
        )
    return {
        "rate": (sent - 1) / (last - first).total_seconds(),
        "wall": wall,
    }


def _fastest(operation: Callable[[], float]) -> float:
    return min(operation() for _ in range(REPEATS))


def compose_vs_insert(app: Flask, user: User, account: EmailAccount) -> dict:
    """(c) create_send for COMPOSE_RECIPIENTS against a bare insert of the same rows."""
    people = _people(COMPOSE_RECIPIENTS)

    def compose() -> float:
        started = time.perf_counter()
        outbox.create_send(user, account, people, SUBJECT, BODY)
        elapsed = time.perf_counter() - started
        _forget_messages()
        return elapsed

    def bare_insert() -> float:
        send = Send(
            user_id=user.id,
            account_id=account.id,
            subject=SUBJECT,
            body_text=BODY,
            status="queued",
            recipient_count=len(people),
        )
        db.session.add(send)
        db.session.commit()
        now = utcnow()
        rows = [
            {
                "send_id": send.id,
                "account_id": account.id,
                "recipient_email": person.email,
                "recipient_name": person.name,
                "message_id_header": new_message_id(SMTP_USER),
                "status": MessageStatus.PENDING,
                "attempts": 0,
                "due_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for person in people
        ]
        started = time.perf_counter()
        db.session.execute(insert(Message.__table__), rows)
        db.session.commit()
        elapsed = time.perf_counter() - started
        _forget_messages()
        return elapsed

    return {"compose": _fastest(compose), "insert": _fastest(bare_insert)}


def _forget_messages() -> None:
    db.session.execute(delete(Message))
    db.session.execute(delete(Send))
    db.session.commit()


def _token(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)[1]


def compose_request(app: Flask, user: User) -> float:
    """The whole compose request: parse and check the addresses, write, enqueue."""
    client = app.test_client()
    client.post(
        "/login",
        data={"csrf_token": _token(client, "/login"), "email": user.email, "password": PASSWORD},
    )
    token = _token(client, "/compose")
    lines = "\n".join(f"Pérson {i} <person{i}@example.org>" for i in range(COMPOSE_RECIPIENTS))
    # Requests here run in the bench's app context, so on the bench's session: closed, so that
    # the POST begins its write transaction on a connection of its own, as a real request does.
    db.session.close()
    started = time.perf_counter()
    response = client.post(
        "/compose",
        data={"csrf_token": token, "recipients": lines, "subject": SUBJECT, "body": BODY},
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 302:
        raise RuntimeError(f"compose answered {response.status_code}")
    _forget_messages()
    return elapsed


def main() -> None:
    with (
        scratch_space() as (folder, redis_url),
        smtp_sink(folder) as port,
        database() as url,
        upgraded_app(folder, url, redis_url) as (app, env),
    ):
        user, account = _setup(port)
        # Interleaved, so that load from elsewhere weighs on both alike.
        ceilings, drains, unmetered, merged = [], [], [], []
        for _ in range(REPEATS):
            ceilings.append(raw_smtplib(port, WORKER_MESSAGES))
            drains.append(worker_drain(app, env, user, account))
            unmetered.append(worker_drain(app, env, user, account, command=UNMETERED_WORKER))
            merged.append(worker_drain(app, env, user, account, merged=True))
        ceiling = max(ceilings)
        drain = max(drains, key=lambda run: run["rate"])
        off = max(unmetered, key=lambda run: run["rate"])
        personal = max(merged, key=lambda run: run["rate"])
        compose = compose_vs_insert(app, user, account)
        request = compose_request(app, user)
        backend = db.engine.dialect.name

    ratio_b = drain["rate"] / ceiling
    ratio_c = compose["compose"] / compose["insert"]
    print(f"database: {backend}")
    print(f"(a) raw smtplib, one connection, pre-rendered: {ceiling:8.0f} msgs/s")
    print(
        f"(b) one worker draining {WORKER_MESSAGES:,} messages: {drain['rate']:8.0f} msgs/s "
        f"(whole process incl. start-up: {drain['wall']:.1f} s)"
    )
    print(f"    b/a = {ratio_b:.2f}  (target >= 0.7)")
    print(f"(d) the same drain, limiter's per-message calls taken out: {off['rate']:8.0f} msgs/s")
    print(
        f"    b/d = {drain['rate'] / off['rate']:.2f}  (limits on but not binding vs off: "
        "target >= 0.9)"
    )
    print(f"(e) the same drain with merge fields: {personal['rate']:8.0f} msgs/s")
    print(f"    e/b = {personal['rate'] / drain['rate']:.2f}  (personalised vs not: target >= 0.9)")
    print(
        f"(c) compose {COMPOSE_RECIPIENTS:,} recipients (create_send): "
        f"{compose['compose'] * 1000:6.0f} ms; bare insert of the same rows: "
        f"{compose['insert'] * 1000:6.0f} ms"
    )
    print(f"    c = {ratio_c:.2f}x the bare insert  (target <= 2)")
    print(f"    the whole POST /compose of {COMPOSE_RECIPIENTS:,} lines: {request:.2f} s")


if __name__ == "__main__":
    main()
