"""What may go into a mail header: shared by the forms (which refuse it with a message) and the
recipients reader, free of Flask so the message builder can use it too."""

from __future__ import annotations

import unicodedata


def header_breaking_character(value: str) -> str | None:
    """The first character of `value` that could break a mail header, or None.

    That is every character str.splitlines splits on (CR and LF, but also vertical tab, form
    feed, U+001C..U+001E, U+0085, U+2028 and U+2029: the email library refuses to build a
    header holding any of them) and every other control character (category Cc: the C0 and C1
    ranges and DEL)."""
    for character in value:
        if unicodedata.category(character) == "Cc" or len(f"x{character}x".splitlines()) > 1:
            return character
    return None


def describe_character(character: str) -> str:
    """`U+2028 line separator`: how a message names a character nobody can see."""
    name = unicodedata.name(character, "")
    code = f"U+{ord(character):04X}"
    return f"{code} {name.lower()}" if name else f"{code} (a control character)"
