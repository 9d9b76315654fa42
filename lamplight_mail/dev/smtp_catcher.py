"""Development only: a local SMTP catcher on 127.0.0.1 whose messages are listed at /dev/inbox.

Accounts pointed at it (host 127.0.0.1, port 1025, SSL type none, authentication none) let a
developer send real mail end to end without a real mailbox.
"""

from __future__ import annotations

import email
import email.policy
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

INBOX_FOLDER = "dev-inbox"


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


def start_catcher(folder: str | Path, port: int) -> Controller:
    controller = Controller(_CatchingHandler(DevInbox(folder)), hostname="127.0.0.1", port=port)
    controller.start()
    return controller
