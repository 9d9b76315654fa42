"""What may go into a mail header: shared by the forms (which refuse it with a message) and the
recipients reader, free of Flask so the message builder can use it too."""

from __future__ import annotations

import re
import unicodedata


def header_breaking_character(value: str) -> str | None:
    """The first character of `value` that could break a mail header, or None.

    That is every character str.splitlines splits on (CR and LF, but also vertical tab, form
    feed, U+001C..U+001E, U+0085, U+2028 and U+2029: the email library refuses to build a
    header holding any of them) and every other control character (category Cc: the C0 and C1
    ranges and DEL)."""
    found = _BREAKING.search(value)
    return found.group() if found else None


# Category Cc is exactly U+0000..U+001F and U+007F..U+009F; of the characters splitlines splits
# on, only U+2028 and U+2029 lie outside it. One search at C speed: the worker checks every
# recipient's header values.
_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def describe_character(character: str) -> str:
    """`U+2028 line separator`: how a message names a character nobody can see."""
    name = unicodedata.name(character, "")
    code = f"U+{ord(character):04X}"
    return f"{code} {name.lower()}" if name else f"{code} (a control character)"
