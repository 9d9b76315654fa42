"""One send's email for each of its recipients.

The message is built once per send with messages.build_message (the standard library email
package: UTF-8 subject and names, Date, MIME parts) and only the recipient's own headers, To and
Message-ID, differ from one recipient to the next. Building and serialising a whole EmailMessage
costs about a millisecond, more than the SMTP exchange itself on a fast link, so rebuilding it
for every recipient would halve a worker's throughput.
"""

from __future__ import annotations

from email.utils import formataddr

from lamplight_mail.delivery.mime import build_message, clean_header, to_bytes

_PLACEHOLDER_TO = "recipient@lamplight.invalid"
_PLACEHOLDER_ID = "<recipient@lamplight.invalid>"
_TO_LINE = f"To: {_PLACEHOLDER_TO}\r\n".encode()
_ID_LINE = f"Message-ID: {_PLACEHOLDER_ID}\r\n".encode()


class SendTemplate:
    """The serialised message of one send, ready to be addressed to each recipient."""

    def __init__(
        self,
        *,
        from_email: str,
        from_name: str,
        subject: str,
        body_text: str,
        body_html: str | None = None,
    ) -> None:
        message = build_message(
            from_email=from_email,
            from_name=from_name,
            to_email=_PLACEHOLDER_TO,
            to_name="",
            subject=subject,
            body_text=body_text,
            body_html=body_html,
            message_id=_PLACEHOLDER_ID,
        )
        head, _, body = to_bytes(message).partition(b"\r\n\r\n")
        head += b"\r\n"
        # Both placeholders are short enough never to be folded: each is exactly one line.
        if head.count(_TO_LINE) != 1 or head.count(_ID_LINE) != 1:
            raise RuntimeError("the message headers are not laid out as expected")
        self._head = head
        self._body = b"\r\n" + body

    def render(self, to_email: str, to_name: str, message_id: str) -> bytes:
        """The message as sent to one recipient: CRLF line ends, ready for SMTP DATA."""
        for value in (to_email, to_name, message_id):
            clean_header(value)
        # formataddr quotes specials and RFC 2047-encodes a non-ASCII name, as the policy would.
        to_line = f"To: {formataddr((to_name, to_email), charset='utf-8')}\r\n".encode("ascii")
        id_line = f"Message-ID: {message_id}\r\n".encode("ascii")
        return self._head.replace(_TO_LINE, to_line).replace(_ID_LINE, id_line) + self._body
