"""CSV cells a spreadsheet cannot mistake for a formula (CSV injection).

Every export (the delivery log, the MailChimp audience file) is opened in Excel sooner or later,
and its cells hold what users and recipients typed: an address such as `=2+3@example.org` or
a subject starting with `=HYPERLINK(...)` would run as a formula there. A leading apostrophe
makes the spreadsheet show the text as it is."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value` with an apostrophe in front when it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
