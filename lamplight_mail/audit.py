"""The audit trail: who changed what and when, never a secret."""

from __future__ import annotations

from typing import Any

from flask_login import current_user

from lamplight_mail.extensions import db
from lamplight_mail.models import AuditEvent, User

# Field names whose values are never written to the trail, only the fact they changed.
SECRET_FIELDS = frozenset({"password", "password_encrypted", "password_hash", "token"})


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
