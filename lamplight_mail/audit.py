"""The audit trail: who changed what and when, never a secret."""

from __future__ import annotations

from typing import Any

from flask_login import current_user

from lamplight_mail.extensions import db
from lamplight_mail.models import AuditEvent, User

# Field names whose values are never written to the trail, only the fact they changed.
SECRET_FIELDS = frozenset({"password", "password_encrypted", "password_hash", "token"})


# How the trail names the fields it records, in the words the forms use.
FIELD_LABELS = {
    "provider": "provider",
    "host": "host name",
    "port": "port",
    "auth_method": "authentication",
    "security": "SSL type",
    "username": "username",
    "password": "password",
    "from_email": "From address",
    "from_name": "From name",
    "daily_limit": "recipients per 24 hours",
    "per_minute_limit": "messages per minute",
    "max_recipients": "recipients per message",
    "connection_cap": "connections at once",
    "reserve_percent": "share kept for Outlook (%)",
    "oauth_grant": "OAuth 2.0 sign-in",
    "transport": "send through",
    "owner": "operator",
    "default_for_operators": "default for operators",
    "sign_in": "sign-in",
    "ok": "result",
    "from": "before",
    "to": "to",
}


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " "))


def describe_fields(names: list[str] | tuple[str, ...]) -> str:
    """'authentication and password', 'host name, port and SSL type'."""
    labels = [field_label(name) for name in names]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def value_text(name: str, value: Any) -> str:
    """A recorded value as a person reads it: no None, True or False."""
    if name == "ok":
        return "succeeded" if value else "failed"
    if value is None or value == "":
        return "(none)"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, int) and _is_quantity(name):
        return f"{value:,}"
    return str(value)


# Recorded numbers that name something rather than count it: never "Port 1,025".
LABELS_NOT_QUANTITIES = frozenset({"port"})


def _is_quantity(name: str) -> bool:
    return name not in LABELS_NOT_QUANTITIES and name != "id" and not name.endswith("_id")


def _scrub(details: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if key in SECRET_FIELDS:
            clean[key] = "(changed)" if value else "(unchanged)"
        elif isinstance(value, dict):
            clean[key] = _scrub(value)
        else:
            clean[key] = value
    return clean


def record(
    action: str,
    target_type: str,
    target_id: int | None,
    summary: str,
    details: dict[str, Any] | None = None,
    actor: User | None = None,
) -> AuditEvent:
    """Add an audit event to the session; the caller's commit makes it permanent with the change."""
    if actor is None and current_user and current_user.is_authenticated:
        actor = current_user
    event = AuditEvent(
        actor_id=actor.id if actor else None,
        actor_email=actor.email if actor else "",
        action=action,
        target_type=target_type,
        target_id=target_id,
        summary=summary,
        details=_scrub(details or {}),
    )
    db.session.add(event)
    return event
