"""Attachments: checked against the size limits, held for their uploader until the compose is
sent (a compose shown again for a preview keeps them), then bound to the send, once."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select, update
from werkzeug.datastructures import FileStorage

from lamplight_mail.extensions import db
from lamplight_mail.models import Attachment, Send, User, utcnow

# An upload never sent is purged after this long (retention.purge).
UNSENT_KEPT = timedelta(days=1)
MAX_FILENAME = 255


class AttachmentRefused(ValueError):
    """A file, or the files together, are not acceptable; the message says which and why."""


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB".replace(".0 MB", " MB")


def limits() -> tuple[int, int]:
    """(per file, all files together) in bytes."""
    config = current_app.config
    return config["ATTACHMENT_FILE_MAX_BYTES"], config["ATTACHMENTS_MAX_BYTES"]


def staged(user: User, ids: Iterable[int]) -> list[Attachment]:
    """The user's own uploads not yet sent, among `ids` (anyone else's are ignored)."""
    wanted = set(ids)
    if not wanted:
        return []
    return list(
        db.session.scalars(
            select(Attachment)
            .where(
                Attachment.id.in_(wanted),
                Attachment.user_id == user.id,
                Attachment.send_id.is_(None),
            )
            .order_by(Attachment.id)
        )
    )


def stage(
    user: User, uploads: Sequence[FileStorage], held: Sequence[Attachment]
) -> list[Attachment]:
    """Check and keep the uploaded files beside those already held (the caller commits).
    AttachmentRefused names the file and the limit it breaks; nothing is kept then."""
    per_file, in_all = limits()
    files = []
    for upload in uploads:
        if not upload or not upload.filename:
            continue
        data = upload.read()
        name = _filename(upload.filename)
        if not data:
            raise AttachmentRefused(f"{name} is empty.")
        if len(data) > per_file:
            raise AttachmentRefused(
                f"{name} is {megabytes(len(data))}; a file can be at most {megabytes(per_file)}."
            )
        files.append((name, _content_type(upload, name), data))
    total = sum(a.size for a in held) + sum(len(data) for _, _, data in files)
    if total > in_all:
        raise AttachmentRefused(
            f"The attachments come to {megabytes(total)}; together they can be at most "
            f"{megabytes(in_all)}, what Gmail and Office 365 accept. Share a large file as a "
            "link instead."
        )
    added = [
        Attachment(user_id=user.id, filename=name, content_type=kind, size=len(data), data=data)
        for name, kind, data in files
    ]
    db.session.add_all(added)
    db.session.flush()
    return list(held) + added


def remove(attachments: Sequence[Attachment], ids: Iterable[int]) -> list[Attachment]:
    """Drop the held uploads named by `ids`; return the rest (the caller commits)."""
    dropping = set(ids)
    for attachment in attachments:
        if attachment.id in dropping:
            db.session.delete(attachment)
    return [a for a in attachments if a.id not in dropping]


def bind(attachments: Sequence[Attachment], send: Send) -> None:
    """The held uploads become the send's (in the caller's transaction)."""
    if attachments:
        db.session.execute(
            update(Attachment)
            .where(Attachment.id.in_([a.id for a in attachments]), Attachment.send_id.is_(None))
            .values(send_id=send.id)
            .execution_options(synchronize_session=False)
        )


def purge_unsent(now: datetime | None = None) -> int:
    """Delete uploads never sent, older than UNSENT_KEPT (the caller commits)."""
    cutoff = (now or utcnow()) - UNSENT_KEPT
    return db.session.execute(
        delete(Attachment)
        .where(Attachment.send_id.is_(None), Attachment.created_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount


def _filename(name: str) -> str:
    # The browser's name for it, without a path (old browsers send C:\...\letter.pdf) and
    # without characters that would break a header.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(character for character in name if ord(character) >= 32).strip()
    return (name or "attachment")[-MAX_FILENAME:]


def _content_type(upload: FileStorage, name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    kind = guessed or upload.mimetype or "application/octet-stream"
    return kind if "/" in kind and len(kind) <= 127 else "application/octet-stream"
