"""The Microsoft Graph transport: sendMail with the MIME message, for Microsoft 365 tenants where
SMTP AUTH is switched off (Security Defaults, tenants created after December 2026).

`POST {graph}/v1.0/me/sendMail` for a person's sign-in, `/v1.0/users/{mailbox}/sendMail` for the
app itself; the body is the message base64-encoded with `Content-Type: text/plain`. 202 is
accepted. 429 and 503 carry Retry-After: the account waits that long and nothing fails. 401
gets one fresh token, then the account pauses. No Flask, no database, no queue.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import quote

import requests
from urllib3.exceptions import NewConnectionError

from lamplight_mail.delivery.transports.base import (
    Answer,
    BeforeAcceptance,
    ConnectionSettings,
    TransportFailure,
)
from lamplight_mail.providers import AnswerKind

# Without a Retry-After, a throttled account waits this long.
DEFAULT_RETRY_AFTER_SECONDS = 60

UNAUTHORIZED_HINT = (
    "Microsoft Graph refused the access token twice. Check the app registration has the Mail.Send "
    "permission with admin consent (Application permission when sending as the app itself), "
    "and that the From address is the mailbox signed in; then sign in again."
)
THROTTLED_HINT = (
    "Microsoft Graph asked Lamplight to slow down: the account's mail waits as long as it asked, "
    "then goes out. Nothing has failed."
)


def _error_text(response: requests.Response) -> str:
    """Graph's own words: `{"error": {"code": ..., "message": ...}}`, else the status line."""
    try:
        error = response.json().get("error", {})
        words = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    except (ValueError, AttributeError):
        words = ""
    return words or response.reason or "no explanation"


def _retry_after(response: requests.Response) -> int:
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else DEFAULT_RETRY_AFTER_SECONDS


@dataclass
class GraphSession:
    """The Graph Transport (see base.py): one HTTP session and the current access token."""

    settings: ConnectionSettings
    token: str = field(repr=False)
    http: requests.Session = field(default_factory=requests.Session, repr=False)
    transcript: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        mailbox = self.settings.graph_mailbox
        who = "me" if mailbox == "me" else f"users/{quote(mailbox, safe='@')}"
        return f"{self.settings.graph_url}/v1.0/{who}/sendMail"

    def deliver(
        self,
        from_address: str,
        recipients: list[str],
        message: bytes,
        before_acceptance: BeforeAcceptance | None = None,
    ) -> Answer:
        """Send one message (Graph takes the recipients from its headers)."""
        if before_acceptance is not None:
            before_acceptance()
        body = base64.b64encode(message)
        response = self._post(body)
        if isinstance(response, Answer):
            return response
        if response.status_code == 401:
            assert self.settings.token_source is not None
            # Revoked or expired early: one fresh token, then Graph's word is final.
            try:
                self.token = self.settings.token_source(self.token)
            except TransportFailure as failure:
                return failure.answer
            response = self._post(body)
            if isinstance(response, Answer):
                return response
        status = response.status_code
        if status == 202:
            return Answer(AnswerKind.ACCEPTED, "Accepted", 202)
        text = _error_text(response)
        if status in (429, 503):
            return Answer(
                AnswerKind.TEMPORARY,
                text,
                status,
                hint=THROTTLED_HINT,
                retry_after=_retry_after(response),
            )
        if status in (401, 403):
            return Answer(AnswerKind.PAUSE_ACCOUNT, text, status, "auth", UNAUTHORIZED_HINT)
        kind = AnswerKind.TEMPORARY if status >= 500 else AnswerKind.PERMANENT
        return Answer(kind, text, status)

    def _post(self, body: bytes) -> requests.Response | Answer:
        """The request, or an Answer when no HTTP answer came back."""
        try:
            return self.http.post(
                self.url,
                data=body,
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "text/plain"},
                timeout=self.settings.timeout,
            )
        except requests.ConnectionError as error:
            if isinstance(error, requests.ConnectTimeout) or _never_connected(error):
                return Answer(
                    AnswerKind.TEMPORARY,
                    f"Microsoft Graph could not be reached ({type(error).__name__})",
                    stage="connect",
                )
            # The request may have arrived before the line went quiet: sending it again could
            # send the message twice.
            return Answer(
                AnswerKind.UNKNOWN, f"no answer from Microsoft Graph ({type(error).__name__})"
            )
        except requests.Timeout as error:
            return Answer(
                AnswerKind.UNKNOWN,
                f"no answer from Microsoft Graph within {self.settings.timeout:g} s "
                f"({type(error).__name__})",
            )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GraphSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _never_connected(error: requests.ConnectionError) -> bool:
    cause = error.args[0] if error.args else None
    reason = getattr(cause, "reason", None)
    return isinstance(reason, NewConnectionError)


def connect(settings: ConnectionSettings) -> GraphSession:
    """Graph needs no handshake: opening gets the access token. Raises TransportFailure when
    none can be had (the token source says why)."""
    assert settings.token_source is not None, "Microsoft Graph needs an OAuth 2.0 account"
    token = settings.token_source(None)
    return GraphSession(
        settings,
        token,
        transcript=["Microsoft issued an access token for Microsoft Graph (Mail.Send)."],
    )
