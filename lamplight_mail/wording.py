"""Counted things as people write them: "1 recipient", "2,000 recipients". One helper, used by
pages, flashes and the audit trail alike (delivery may use it: it needs nothing of the web)."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` with the word that fits it: plural(1, "row") == "1 row",
    plural(3, "address", "addresses") == "3 addresses"."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count:,} {word}"


def send_name(subject: str | None) -> str:
    """How a send is named to people: by its subject, not its database id."""
    return f"“{subject}”" if subject else "the email without a subject"
