"""Development only: a local SMTP catcher on 127.0.0.1 whose messages are listed at /dev/inbox.

Accounts pointed at it (host 127.0.0.1, port 1025) let a developer send real mail end to end
without a real mailbox, either as a plain relay (SSL type none, authentication none) or as the
help page sets up a real mailbox: SSL type TLS (STARTTLS) and authentication login. AUTH is
offered only after STARTTLS, as Office 365 does (before it: 538 5.7.11). Any username and
password sign in, unless LAMPLIGHT_MAIL_DEV_SMTP_PASSWORD names the one password accepted (a
wrong one gets Office 365's 535 5.7.3, to rehearse the help page's advice).

Its certificate is made at first run under instance/ (`dev-smtp/`), for 127.0.0.1 and
localhost. `make run` (dev/run.py) trusts it through SSL_CERT_FILE, set for its own children
only, to the system's certificates plus this one: production never runs dev/run.py, so nothing
outside development trusts it.
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import os
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

INBOX_FOLDER = "dev-inbox"
CERT_FOLDER = "dev-smtp"
PASSWORD_ENV = "LAMPLIGHT_MAIL_DEV_SMTP_PASSWORD"


@dataclass(frozen=True)
class CaughtMessage:
    name: str
    received_at: datetime  # naive UTC, like every stored time
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""


class DevInbox:
    """Caught messages as .eml files in one folder, newest first."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def save(self, raw: bytes) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        temporary = self.folder / (name + ".part")
        temporary.write_bytes(raw)
        temporary.rename(self.folder / name)  # readers never see half a message
        return name

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted((path.name for path in self.folder.glob("*.eml")), reverse=True)

    def get(self, name: str) -> CaughtMessage | None:
        if name not in self.names():  # also refuses any path trickery in `name`
            return None
        path = self.folder / name
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        received_at = datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(tzinfo=None)
        return CaughtMessage(name=name, received_at=received_at, message=message)


class _CatchingHandler:
    def __init__(self, inbox: DevInbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.inbox.save(envelope.original_content or envelope.content)
        return "250 2.0.0 Caught for /dev/inbox"


@dataclass(frozen=True)
class CatcherCertificate:
    cert_file: Path
    key_file: Path


def ensure_certificate(folder: str | Path) -> CatcherCertificate:
    """The catcher's self-signed certificate for 127.0.0.1 and localhost, made on first use."""
    folder = Path(folder)
    found = CatcherCertificate(folder / "cert.pem", folder / "key.pem")
    if found.cert_file.is_file() and found.key_file.is_file():
        return found
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lamplight Mail dev SMTP catcher")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    found.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    found.key_file.chmod(0o600)
    found.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return found


def trust_bundle(certificate: CatcherCertificate, folder: str | Path) -> Path:
    """A CA file holding the certificates already trusted (SSL_CERT_FILE's, else the system's)
    and the catcher's: what make run's children get as SSL_CERT_FILE."""
    paths = ssl.get_default_verify_paths()
    current = os.environ.get("SSL_CERT_FILE") or paths.cafile or paths.openssl_cafile
    trusted = Path(current).read_bytes() if current and Path(current).is_file() else b""
    bundle = Path(folder) / "trusted.pem"
    bundle.write_bytes(trusted.rstrip() + b"\n" + certificate.cert_file.read_bytes())
    return bundle


def _authenticator(password: str | None):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if password is None or auth_data.password.decode() == password:
            return AuthResult(success=True)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    return authenticate


def start_catcher(
    folder: str | Path, port: int, certificate: CatcherCertificate | None = None
) -> Controller:
    """Listen on 127.0.0.1:`port`; with a certificate, STARTTLS and AUTH LOGIN/PLAIN are offered
    too (neither required, so a plain relay account works as before)."""
    # Imported here: aiosmtpd is a development tool; the web app reads the inbox without it.
    from aiosmtpd.controller import Controller

    options: dict = {}
    if certificate is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate.cert_file, certificate.key_file)
        options = {
            "tls_context": context,
            "require_starttls": False,
            "auth_required": False,
            "auth_require_tls": True,
            "authenticator": _authenticator(os.environ.get(PASSWORD_ENV) or None),
        }
    controller = Controller(
        _CatchingHandler(DevInbox(folder)), hostname="127.0.0.1", port=port, **options
    )
    controller.start()
    return controller
