"""One send's email, serialised once and filled in for each recipient.

The message is built once per send with messages.build_message (the standard library email
package: UTF-8 headers, Date, MIME parts, attachments encoded once) around placeholders, and
split at them. Filling it for a recipient then costs only what differs: To, Message-ID, the
List-Unsubscribe headers, and the subject and bodies when they hold merge fields (filled, then
encoded: the subject folded by the policy, each body quoted-printable). Building and
serialising a whole EmailMessage costs about a millisecond, more than the SMTP exchange on a
fast link, so doing it per recipient would halve a worker's throughput.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formataddr

from lamplight_mail.delivery import merge
from lamplight_mail.delivery.mime import HeaderInjection, build_message, to_bytes

# Not a field anyone can type: filled with the recipient's unsubscribe link.
UNSUBSCRIBE_FIELD = merge.Field("\0unsubscribe")
TEXT_FOOTER = "\n\n--\nTo stop receiving email from us: "
HTML_FOOTER = '<p>To stop receiving email from us, <a href="'
HTML_FOOTER_END = '">unsubscribe</a>.</p>'
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
# "Subject: " and the subject within 78 characters a line; an encoded-word of 39 bytes of UTF-8
# is 64 characters with its =?utf-8?b? ?= frame, 73 after "Subject: ".
_SUBJECT_PLAIN_MAX = 78 - len("Subject: ")
_ENCODED_WORD_BYTES = 39


@dataclass(frozen=True, slots=True)
class AttachedFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the template needs of one message."""

    email: str
    name: str
    message_id: str
    merge_values: Mapping[str, str] | None = None
    unsubscribe_token: str | None = None


class SendTemplate:
    """The serialised message of one send, ready to be filled for each recipient."""

    def __init__(
        self,
        *,
        from_email: str,
        from_name: str,
        subject: str,
        body_text: str,
        body_html: str | None = None,
        reply_to: str | None = None,
        attachments: Sequence[AttachedFile] = (),
        unsubscribe_base: str | None = None,
    ) -> None:
        self.subject = merge.Text(subject)
        text = merge.Text(body_text)
        html = merge.Text(body_html, escape=True) if body_html else None
        self.unsubscribe_base = unsubscribe_base
        if unsubscribe_base:
            text = text.then(TEXT_FOOTER, UNSUBSCRIBE_FIELD, "\n")
            if html is not None:
                html = _html_with_footer(body_html or "")
        self.text, self.html = text, html
        self.fields = self.subject.fields | text.fields | (html.fields if html else frozenset())

        marker = uuid.uuid4().hex
        placeholders = {
            "to": f"recipient-{marker}@lamplight.invalid",
            "id": f"<id-{marker}@lamplight.invalid>",
            "subject": f"subject-{marker}",
            "text": f"text-{marker}",
            "html": f"html-{marker}",
        }
        message = build_message(
            from_email=from_email,
            from_name=from_name,
            to_email=placeholders["to"],
            to_name="",
            subject=placeholders["subject"] if self.subject.fields else self.subject.plain(),
            body_text=placeholders["text"] if text.fields else text.plain(),
            body_html=(placeholders["html"] if html.fields else html.plain()) if html else None,
            message_id=placeholders["id"],
        )
        if reply_to:
            message["Reply-To"] = _clean(reply_to)
        for attached in attachments:
            maintype, _, subtype = attached.content_type.partition("/")
            message.add_attachment(
                attached.data,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=attached.filename,
            )
        raw = to_bytes(message)

        # Each placeholder is exactly one short line, found once: where the message is cut.
        spans: list[tuple[int, int, Callable[[Recipient, dict[str, str]], bytes]]] = [
            _line(raw, f"To: {placeholders['to']}", self._to_line),
            _line(raw, f"Message-ID: {placeholders['id']}", self._id_lines),
        ]
        if self.subject.fields:
            spans.append(_line(raw, f"Subject: {placeholders['subject']}", self._subject_line))
        if text.fields:
            spans.append(_body(raw, placeholders["text"], text))
        if html is not None and html.fields:
            spans.append(_body(raw, placeholders["html"], html))
        spans.sort(key=lambda span: span[0])
        self._pieces: list[bytes | Callable[[Recipient, dict[str, str]], bytes]] = []
        at = 0
        for start, end, fill in spans:
            self._pieces.extend((raw[at:start], fill))
            at = end
        self._pieces.append(raw[at:])

    def render(
        self,
        to_email: str,
        to_name: str,
        message_id: str,
        merge_values: Mapping[str, str] | None = None,
        unsubscribe_token: str | None = None,
    ) -> bytes:
        """The message as sent to one recipient: CRLF line ends, ready for SMTP DATA."""
        for value in (to_email, to_name, message_id, unsubscribe_token or ""):
            if "\r" in value or "\n" in value:
                raise HeaderInjection("line breaks are not allowed in a mail header")
        recipient = Recipient(to_email, to_name, message_id, merge_values, unsubscribe_token)
        values: dict[str, str] = {}
        if self.fields:
            values = merge.recipient_values(to_email, to_name, merge_values)
            if self.unsubscribe_base:
                values[UNSUBSCRIBE_FIELD.name] = self._unsubscribe_url(recipient)
        return b"".join(
            piece if isinstance(piece, bytes) else piece(recipient, values)
            for piece in self._pieces
        )

    def _unsubscribe_url(self, recipient: Recipient) -> str:
        return f"{self.unsubscribe_base}{recipient.unsubscribe_token or ''}"

    def _to_line(self, recipient: Recipient, values: dict[str, str]) -> bytes:
        # formataddr quotes specials and RFC 2047-encodes a non-ASCII name, as the policy would.
        address = formataddr((recipient.name, recipient.email), charset="utf-8")
        return f"To: {address}\r\n".encode("ascii")

    def _id_lines(self, recipient: Recipient, values: dict[str, str]) -> bytes:
        lines = f"Message-ID: {recipient.message_id}\r\n"
        if self.unsubscribe_base and recipient.unsubscribe_token:
            # RFC 8058 one-click: the mail program POSTs "List-Unsubscribe=One-Click" to it.
            lines += (
                f"List-Unsubscribe: <{self._unsubscribe_url(recipient)}>\r\n"
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            )
        return lines.encode("ascii")

    def _subject_line(self, recipient: Recipient, values: dict[str, str]) -> bytes:
        return subject_line(self.subject.fill(values))


def subject_line(subject: str) -> bytes:
    """The Subject header for a filled-in subject. The email package's folding costs more than
    the rest of a recipient's message together, so: a short plain-ASCII subject as it is, any
    other as RFC 2047 encoded-words (UTF-8, base64), each on a folded line of its own."""
    if "\r" in subject or "\n" in subject:
        raise HeaderInjection("line breaks are not allowed in a mail header")
    if subject.isascii() and len(subject) <= _SUBJECT_PLAIN_MAX and "=?" not in subject:
        return f"Subject: {subject}\r\n".encode("ascii")
    words, chunk, size = [], [], 0
    for character in subject:
        width = len(character.encode("utf-8"))
        if size + width > _ENCODED_WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(character)
        size += width
    words.append("".join(chunk))
    encoded = "\r\n ".join(
        f"=?utf-8?b?{base64.b64encode(word.encode('utf-8')).decode('ascii')}?=" for word in words
    )
    return f"Subject: {encoded}\r\n".encode("ascii")


def _clean(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjection("line breaks are not allowed in a mail header")
    return value


def _html_with_footer(body_html: str) -> merge.Text:
    """The HTML body with the unsubscribe paragraph inside its <body>, when it has one."""
    ends = list(_BODY_END.finditer(body_html))
    cut = ends[-1].start() if ends else len(body_html)
    before = merge.Text(body_html[:cut], escape=True)
    after = merge.Text(body_html[cut:], escape=True)
    return before.then(HTML_FOOTER, UNSUBSCRIBE_FIELD, HTML_FOOTER_END, *after.parts)


Fill = Callable[[Recipient, dict[str, str]], bytes]


def _find_once(raw: bytes, needle: bytes) -> int:
    if raw.count(needle) != 1:
        raise RuntimeError("the message is not laid out as expected")
    return raw.index(needle)


def _line(raw: bytes, line: str, fill: Fill) -> tuple[int, int, Fill]:
    needle = f"{line}\r\n".encode()
    start = _find_once(raw, needle)
    return start, start + len(needle), fill


_SEVEN_BIT = b"Content-Transfer-Encoding: 7bit\r\n"


def _body(raw: bytes, placeholder: str, text: merge.Text) -> tuple[int, int, Fill]:
    """The span of a body part from its 7bit transfer-encoding header (an ASCII one-line body
    is written 7bit, as is) to the end of its content, and how to fill it."""
    needle = f"\r\n\r\n{placeholder}\r\n".encode()
    at = _find_once(raw, needle)
    start = raw.rfind(_SEVEN_BIT, 0, at + 2)
    if start < 0:
        raise RuntimeError("the message is not laid out as expected")
    # Any part headers between the transfer encoding and the content stay as they are.
    between = raw[start + len(_SEVEN_BIT) : at + 2]

    def fill(recipient: Recipient, values: dict[str, str]) -> bytes:
        return _quoted_printable(text.fill(values), between)

    return start, at + len(needle), fill


def _quoted_printable(text: str, between: bytes) -> bytes:
    """A body part's header end and content, quoted-printable (binascii: C speed)."""
    text = text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    return b"Content-Transfer-Encoding: quoted-printable\r\n" + between + b"\r\n" + encoded
