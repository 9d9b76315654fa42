"""Local stand-ins for the providers' OAuth 2.0 side, on 127.0.0.1, real HTTP and real SMTP:

- AuthorizationServer: Microsoft's identity platform ({authority}/{tenant}/v2.0/.well-known/
  openid-configuration, /oauth2/v2.0/authorize and /token) and Google's (/google/auth,
  /google/token) in one server. The token endpoint checks the client secret, the redirect URI
  and the PKCE verifier (S256) of a code, refreshes (rotating the refresh token as Microsoft
  does), issues client-credentials tokens, and answers invalid_grant / AADSTS errors as the
  providers do. Every access token it issues can be asked about: is it live?
- GraphServer: Microsoft Graph's sendMail (/v1.0/me/sendMail and /v1.0/users/{mailbox}/sendMail):
  202 for a live token and a base64 MIME body, 401 otherwise, and scripted 429/503 with
  Retry-After.
- start_xoauth2_server: aiosmtpd offering AUTH XOAUTH2 only, checking the exact SASL string
  `user=<mailbox>\\x01auth=Bearer <token>\\x01\\x01` and that the token is live.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlencode

from aiosmtpd.smtp import SMTP, AuthResult
from flask import Flask, jsonify, make_response, redirect, request
from werkzeug.serving import make_server

from tests.smtp_servers import (
    Received,
    SMTPServer,
    _Handler,
    free_port,
    start_server,
    wait_for_messages,
)

TENANT = "riverside.org.uk"
MS_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
MS_CLIENT_SECRET = "ms-secret~Qx8Q~very-secret-value"
GOOGLE_CLIENT_ID = "1234-abc.apps.googleusercontent.com"
GOOGLE_CLIENT_SECRET = "GOCSPX-google-secret-value"
MAILBOX = "sender@charity.example"
# Where the app says it is served (LAMPLIGHT_MAIL_PUBLIC_URL): its OAuth redirect URI's origin.
PUBLIC_URL = "http://lamplight.test"

_AADSTS70008 = (
    "AADSTS70008: The provided authorization code or refresh token has expired due to "
    "inactivity. Send a new interactive authorization request for this user and resource.\r\n"
    "Trace ID: 0e2c Correlation ID: 9f1a Timestamp: 2026-12-01 04:00:00Z"
)
_AADSTS7000215 = (
    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request "
    "is the client secret value, not the client secret ID.\r\nTrace ID: 1b2c"
)


class _ServerThread:
    """A Flask app served by werkzeug in a thread, on a free port."""

    def __init__(self, app: Flask) -> None:
        self.port = free_port()
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


class _Served:
    """A stand-in served over HTTP: `start()` it, ask its `url`, `stop()` it."""

    def _app(self) -> Flask:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread = _ServerThread(self._app())
        return self

    def stop(self) -> None:
        self._thread.stop()

    @property
    def url(self) -> str:
        return self._thread.url


@dataclass
class Issued:
    """An access token the server issued."""

    client_id: str
    scope: str
    subject: str  # the mailbox signed in, or "app"
    expires_at: float


@dataclass
class AuthorizationServer(_Served):
    """Microsoft's and Google's identity platforms, as far as Lamplight uses them."""

    access_token_seconds: int = 3600
    mailbox: str = MAILBOX
    clients: dict[str, str] = field(
        default_factory=lambda: {
            MS_CLIENT_ID: MS_CLIENT_SECRET,
            GOOGLE_CLIENT_ID: GOOGLE_CLIENT_SECRET,
        }
    )
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    access_tokens: dict[str, Issued] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    # The next authorize request is answered with this error (e.g. "access_denied").
    authorize_error: tuple[str, str] | None = None
    # Token endpoint answers to give before the real ones: (status, JSON body).
    scripted: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def google_auth_url(self) -> str:
        return f"{self.url}/google/auth"

    @property
    def google_token_url(self) -> str:
        return f"{self.url}/google/token"

    # --- what tests ask and do -----------------------------------------------------------

    def is_live(self, token: str, scope: str | None = None) -> bool:
        with self.lock:
            issued = self.access_tokens.get(token)
        if issued is None or issued.expires_at <= time.time():
            return False
        return scope is None or scope in issued.scope.split()

    def subject_of(self, token: str) -> str | None:
        with self.lock:
            issued = self.access_tokens.get(token)
        return issued.subject if issued else None

    def grants(self, grant_type: str) -> list[dict[str, str]]:
        with self.lock:
            return [r for r in self.token_requests if r.get("grant_type") == grant_type]

    def expire_access_tokens(self) -> None:
        with self.lock:
            for issued in self.access_tokens.values():
                issued.expires_at = 0

    def revoke(self) -> None:
        """The person revoked Lamplight's access (or an admin did): refresh tokens and access
        tokens stop working."""
        with self.lock:
            self.refresh_tokens.clear()
            self.access_tokens.clear()

    def script(self, status: int, body: dict[str, Any]) -> None:
        with self.lock:
            self.scripted.append((status, body))

    def script_invalid_client_secret(self) -> None:
        self.script(
            401,
            {
                "error": "invalid_client",
                "error_description": _AADSTS7000215,
                "error_codes": [7000215],
            },
        )

    # --- the endpoints -------------------------------------------------------------------

    def _app(self) -> Flask:
        app = Flask(__name__)

        @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
        def discovery(tenant: str) -> Any:
            base = f"{self.url}/{tenant}"
            return jsonify(
                issuer=f"{base}/v2.0",
                authorization_endpoint=f"{base}/oauth2/v2.0/authorize",
                token_endpoint=f"{base}/oauth2/v2.0/token",
                response_types_supported=["code"],
                code_challenge_methods_supported=["S256"],
            )

        @app.get("/<tenant>/oauth2/v2.0/authorize")
        def microsoft_authorize(tenant: str) -> Any:
            return self._authorize("microsoft", tenant)

        @app.post("/<tenant>/oauth2/v2.0/token")
        def microsoft_token(tenant: str) -> Any:
            return self._token("microsoft", tenant)

        @app.get("/google/auth")
        def google_authorize() -> Any:
            return self._authorize("google", "")

        @app.post("/google/token")
        def google_token() -> Any:
            return self._token("google", "")

        return app

    def _authorize(self, provider: str, tenant: str) -> Any:
        args = request.args.to_dict()
        with self.lock:
            self.authorize_requests.append({**args, "provider": provider, "tenant": tenant})
            refusal, self.authorize_error = self.authorize_error, None
        redirect_uri = args.get("redirect_uri", "")
        if (
            args.get("client_id") not in self.clients
            or args.get("response_type") != "code"
            or args.get("code_challenge_method") != "S256"
            or not args.get("code_challenge")
            or not args.get("state")
            or not redirect_uri
        ):
            return jsonify(error="invalid_request", request=args), 400
        if refusal is not None:
            query = {"error": refusal[0], "error_description": refusal[1], "state": args["state"]}
            return redirect(f"{redirect_uri}?{urlencode(query)}")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {
                "client_id": args["client_id"],
                "redirect_uri": redirect_uri,
                "challenge": args["code_challenge"],
                "scope": args.get("scope", ""),
                "subject": args.get("login_hint") or self.mailbox,
            }
        return redirect(f"{redirect_uri}?{urlencode({'code': code, 'state': args['state']})}")

    def _error(self, provider: str, error: str, status: int = 400) -> Any:
        description = {
            ("microsoft", "invalid_grant"): _AADSTS70008,
            ("microsoft", "invalid_client"): _AADSTS7000215,
            ("google", "invalid_grant"): "Token has been expired or revoked.",
        }.get((provider, error), error)
        return jsonify(error=error, error_description=description), status

    def _token(self, provider: str, tenant: str) -> Any:
        form = request.form.to_dict()
        with self.lock:
            self.token_requests.append({**form, "provider": provider})
            scripted = self.scripted.popleft() if self.scripted else None
        if scripted is not None:
            return jsonify(scripted[1]), scripted[0]
        client_id = form.get("client_id", "")
        if client_id not in self.clients or self.clients[client_id] != form.get("client_secret"):
            return self._error(provider, "invalid_client", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            with self.lock:
                code = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if (
                code is None
                or code["client_id"] != client_id
                or code["redirect_uri"] != form.get("redirect_uri")
                or code["challenge"] != challenge
            ):
                return self._error(provider, "invalid_grant")
            return self._issue(client_id, code["scope"], code["subject"], with_refresh=True)
        if grant_type == "refresh_token":
            with self.lock:
                grant = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if grant is None or grant["client_id"] != client_id:
                return self._error(provider, "invalid_grant")
            # Microsoft rotates refresh tokens; Google keeps the one it gave.
            rotate = provider == "microsoft"
            if not rotate:
                with self.lock:
                    self.refresh_tokens[form["refresh_token"]] = grant
            return self._issue(
                client_id, form.get("scope") or grant["scope"], grant["subject"], rotate
            )
        if grant_type == "client_credentials":
            if provider != "microsoft" or not form.get("scope", "").endswith("/.default"):
                return self._error(provider, "invalid_scope")
            return self._issue(client_id, form["scope"], "app", with_refresh=False)
        return self._error(provider, "unsupported_grant_type")

    def _issue(self, client_id: str, scope: str, subject: str, with_refresh: bool) -> Any:
        access = secrets.token_urlsafe(32)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": self.access_token_seconds,
            "scope": scope,
        }
        with self.lock:
            self.access_tokens[access] = Issued(
                client_id, scope, subject, time.time() + self.access_token_seconds
            )
            if with_refresh and ("offline_access" in scope or "mail.google.com" in scope):
                refresh = secrets.token_urlsafe(40)
                self.refresh_tokens[refresh] = {
                    "client_id": client_id,
                    "scope": scope,
                    "subject": subject,
                }
                body["refresh_token"] = refresh
        return jsonify(body), 200


@dataclass
class GraphMessage:
    path: str
    mailbox: str  # "me" or the mailbox of /users/{mailbox}
    subject: str  # whose token sent it
    message: email.message.EmailMessage
    raw: bytes


@dataclass
class GraphServer(_Served):
    """Microsoft Graph's sendMail, checking tokens against the authorization server."""

    authority: AuthorizationServer
    messages: list[GraphMessage] = field(default_factory=list)
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, status answered)
    # Answers to give before accepting: (status, Retry-After seconds or None).
    scripted: deque[tuple[int, int | None]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, status: int, retry_after: int | None = None) -> None:
        with self.lock:
            self.scripted.append((status, retry_after))

    def wait_for(self, count: int, timeout: float = 30.0) -> list[GraphMessage]:
        return wait_for_messages(self.messages, self.lock, count, timeout, "Graph")

    def _app(self) -> Flask:
        app = Flask(__name__)

        @app.post("/v1.0/me/sendMail")
        def send_as_me() -> Any:
            return self._send("me")

        @app.post("/v1.0/users/<mailbox>/sendMail")
        def send_as_user(mailbox: str) -> Any:
            return self._send(mailbox)

        return app

    def _answer(
        self, status: int, body: dict[str, Any] | None = None, retry_after: int | None = None
    ) -> Any:
        with self.lock:
            self.requests.append((request.path, status))
        response = make_response(jsonify(body) if body is not None else "", status)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    def _send(self, mailbox: str) -> Any:
        with self.lock:
            scripted = self.scripted.popleft() if self.scripted else None
        if scripted is not None:
            status, retry_after = scripted
            code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
            error = {"error": {"code": code, "message": "Application is over its limit."}}
            return self._answer(status, error, retry_after)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        if not header.startswith("Bearer ") or not self.authority.is_live(token):
            return self._answer(
                401,
                {
                    "error": {
                        "code": "InvalidAuthenticationToken",
                        "message": "Lifetime validation failed, the token is expired.",
                    }
                },
            )
        if request.content_type != "text/plain":
            return self._answer(
                400, {"error": {"code": "ErrorMimeContentInvalid", "message": "Content-Type"}}
            )
        try:
            raw = base64.b64decode(request.get_data(), validate=True)
        except binascii.Error:
            return self._answer(
                400, {"error": {"code": "ErrorMimeContentInvalidBase64String", "message": "b64"}}
            )
        with self.lock:
            self.messages.append(
                GraphMessage(
                    request.path,
                    mailbox,
                    self.authority.subject_of(token) or "",
                    email.message_from_bytes(raw, policy=email.policy.default),
                    raw,
                )
            )
        return self._answer(202)


class XOAuth2Handler(_Handler):
    """aiosmtpd handler adding AUTH XOAUTH2: the exact SASL string, a live token, the mailbox
    the token was issued for."""

    def __init__(self, recorder, authority: AuthorizationServer) -> None:
        super().__init__(recorder)
        self.authority = authority
        self.xoauth2: list[tuple[str, bool]] = []  # (user=, accepted)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob = args[1].encode()
        else:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        try:
            decoded = base64.b64decode(blob, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode")
        user, token, ok = "", "", False
        if decoded.startswith("user=") and decoded.endswith("\x01\x01"):
            parts = decoded[:-2].split("\x01")
            if len(parts) == 2 and parts[1].startswith("auth=Bearer "):
                user = parts[0].removeprefix("user=")
                token = parts[1].removeprefix("auth=Bearer ")
                subject = self.authority.subject_of(token)
                ok = self.authority.is_live(token) and subject in (user, "app")
        with self.recorder.lock:
            self.xoauth2.append((user, ok))
            self.recorder.logins.append((user, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        return AuthResult(
            success=False,
            handled=False,
            message="535 5.7.3 Authentication unsuccessful [token expired or invalid]",
        )


def start_xoauth2_server(authority: AuthorizationServer, server_context) -> SMTPServer:
    """Like smtp.office365.com with OAuth: STARTTLS, then AUTH XOAUTH2 (no password AUTH)."""
    return start_server(
        mode="starttls",
        server_context=server_context,
        credentials={},
        handler_class=XOAuth2Handler,
        handler_options={"authority": authority},
    )


__all__ = [
    "AuthorizationServer",
    "GraphServer",
    "Received",
    "start_xoauth2_server",
]
