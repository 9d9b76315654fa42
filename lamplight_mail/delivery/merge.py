"""Merge fields: `{first_name}`, `{last_name}`, `{name}`, `{email}` and any CSV column by its
header (lower case, spaces as `_`), filled per recipient in the subject and both bodies.

A text is parsed once per send into literal pieces and fields, so filling it for a recipient is
one join. Only `{word}` is a field: a brace that is not part of one (CSS in an HTML body, say)
is left as written, and `{{` and `}}` write a single brace.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BUILT_IN = ("first_name", "last_name", "name", "email")
# What a recipient without a name gets (said on the compose form): "Dear friend," reads well;
# an empty CSV cell, and a missing last name, leave the field empty.
FALLBACKS = {"first_name": "friend", "name": "friend"}
_TOKEN = re.compile(r"\{\{|\}\}|\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}")


@dataclass(frozen=True, slots=True)
class Field:
    name: str


def column_key(header: str) -> str:
    """A CSV header as a merge field's name: `Post Code` is {post_code}."""
    return "_".join(header.strip().lower().split())


class Text:
    """A subject or body parsed into literal pieces and fields, ready to fill per recipient."""

    __slots__ = ("escape", "fields", "parts")

    def __init__(self, source: str, *, escape: bool = False) -> None:
        parts: list[str | Field] = []
        literal: list[str] = []
        at = 0
        for match in _TOKEN.finditer(source):
            literal.append(source[at : match.start()])
            at = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                literal.append(token[0])
                continue
            parts.append("".join(literal))
            literal = []
            parts.append(Field(match.group(1).lower()))
        literal.append(source[at:])
        parts.append("".join(literal))
        self.parts = tuple(part for part in parts if part != "")
        self.fields = frozenset(part.name for part in self.parts if isinstance(part, Field))
        # HTML bodies get their values escaped: a name is text, never markup.
        self.escape = escape

    @property
    def static(self) -> bool:
        return not self.fields

    def plain(self) -> str:
        """The text as written (braces undoubled), for a text with no fields."""
        return "".join(part for part in self.parts if isinstance(part, str))

    def then(self, *parts: str | Field) -> Text:
        """This text followed by more pieces (the unsubscribe footer)."""
        joined = Text("", escape=self.escape)
        joined.parts = self.parts + tuple(part for part in parts if part != "")
        joined.fields = self.fields | {part.name for part in parts if isinstance(part, Field)}
        return joined

    def fill(self, values: Mapping[str, str]) -> str:
        if self.escape:
            return "".join(
                part if isinstance(part, str) else html.escape(values[part.name], quote=True)
                for part in self.parts
            )
        return "".join(part if isinstance(part, str) else values[part.name] for part in self.parts)


def split_name(name: str) -> tuple[str, str]:
    """First and last name from a display name: `Jo van der Berg`, `Smith, Jo`."""
    name = name.strip()
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    words = name.split()
    if not words:
        return "", ""
    return words[0], " ".join(words[1:])


def recipient_values(
    email: str, name: str, columns: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every field's value for one recipient; CSV columns win over the derived ones (a
    `first name` column, say)."""
    first, last = split_name(name)
    values = {
        "first_name": first or FALLBACKS["first_name"],
        "last_name": last,
        "name": name.strip() or FALLBACKS["name"],
        "email": email,
    }
    if columns:
        values.update(
            (key, value) for key, value in columns.items() if value or key not in BUILT_IN
        )
    return values


def unknown_fields(texts: Iterable[Text], known: Iterable[str]) -> list[str]:
    """Fields used but known to no recipient, sorted."""
    allowed = set(BUILT_IN) | set(known)
    return sorted({name for text in texts for name in text.fields} - allowed)


def describe_unknown(names: list[str]) -> str:
    shown = ", ".join("{" + name + "}" for name in names)
    plural = "These fields are" if len(names) > 1 else "This field is"
    return (
        f"{plural} not known for any recipient: {shown}. Use {{first_name}}, {{last_name}}, "
        "{name}, {email} or a column of your CSV file (its header in lower case, spaces as _); "
        "to write a brace, type it twice: {{ or }}."
    )
