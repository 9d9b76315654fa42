"""What a message looks like to one recipient: the very bytes the worker would send, read back
for a page (the compose preview, the send page)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field

from lamplight_mail.models import Send

# The message's own HTML is shown in an iframe with `sandbox` (no script, no forms, no
# navigation) from srcdoc, led by this policy: no remote images, fonts or styles sheets, so
# opening it tells no tracker anything; its own inline styles still apply.
HTML_POLICY = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "style-src 'unsafe-inline'; img-src data:\">"
)


@dataclass(frozen=True)
class ShownAttachment:
    filename: str
    size: int


@dataclass
class Shown:
    """A message as a page shows it."""

    subject: str
    to: str = ""
    from_: str = ""
    reply_to: str = ""
    text: str = ""
    html: str | None = None
    attachments: list[ShownAttachment] = field(default_factory=list)
    list_unsubscribe: str = ""

    @property
    def html_document(self) -> str | None:
        """The HTML version for an iframe's srcdoc (escaped by the template)."""
        return None if self.html is None else HTML_POLICY + self.html


def read(raw: bytes) -> Shown:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return Shown(
        subject=str(message["Subject"] or ""),
        to=str(message["To"] or ""),
        from_=str(message["From"] or ""),
        reply_to=str(message["Reply-To"] or ""),
        text=text.get_content() if text is not None else "",
        html=html.get_content() if html is not None else None,
        attachments=[
            ShownAttachment(part.get_filename() or "attachment", len(part.get_content()))
            for part in message.iter_attachments()
        ],
        list_unsubscribe=str(message["List-Unsubscribe"] or ""),
    )


def of_send(send: Send) -> Shown:
    """A send's message as composed: merge fields show as written ({first_name})."""
    account = send.account
    return Shown(
        subject=send.subject,
        from_=f"{account.from_name} <{account.from_email}>"
        if account.from_name
        else account.from_email,
        reply_to=send.reply_to or "",
        text=send.body_text,
        html=send.body_html,
        attachments=[ShownAttachment(a.filename, a.size) for a in send.attachments],
        list_unsubscribe="added, with each recipient's own link" if send.unsubscribe_base else "",
    )
