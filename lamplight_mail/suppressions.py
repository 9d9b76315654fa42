"""The do-not-email list: addresses the organisation never sends to, whether an admin put
them there, imported them, or the person used an unsubscribe link."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select

from lamplight_mail import audit
from lamplight_mail.extensions import db
from lamplight_mail.models import Suppression, User

# IN lists stay well under every database's limit on bound parameters.
CHUNK = 500


def listed(addresses: Iterable[str]) -> set[str]:
    """Which of the addresses are on the list (lower-cased)."""
    wanted = sorted({address.lower() for address in addresses})
    found: set[str] = set()
    for at in range(0, len(wanted), CHUNK):
        found.update(
            db.session.scalars(
                select(Suppression.email).where(Suppression.email.in_(wanted[at : at + CHUNK]))
            )
        )
    return found


def add(addresses: Sequence[str], source: str, actor: User | None) -> list[str]:
    """Put the addresses on the list (the caller commits and audits); return those that were
    not on it already."""
    already = listed(addresses)
    new = sorted({address.lower() for address in addresses} - already)
    db.session.add_all(
        Suppression(email=address, source=source, created_by_id=actor.id if actor else None)
        for address in new
    )
    db.session.flush()
    return new


def unsubscribe(address: str) -> bool:
    """The person asked, through their link: on the list (commits); False if already there."""
    added = add([address], "unsubscribe", None)
    if added:
        audit.record(
            "suppression.unsubscribed",
            "suppression",
            None,
            f"{address.lower()} unsubscribed through the link in an email",
            {"email": address.lower()},
            actor=None,
        )
    db.session.commit()
    return bool(added)
