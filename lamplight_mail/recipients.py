"""The recipients of a compose: typed lines (`addr` or `Name <addr>`) and an optional CSV file
(`email`, optional `name` columns), checked, with repeats merged and bad entries explained."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from email_validator import EmailNotValidError, validate_email

from lamplight_mail.delivery.merge import column_key
from lamplight_mail.headers import describe_character, header_breaking_character

MAX_NAME_LENGTH = 120  # Message.recipient_name
MAX_RECIPIENTS = 50_000
# Unpacked, the merge values carried through a compose shown again are far smaller than this;
# more is not what the form wrote, and is not read.
MAX_CARRIED_BYTES = 32 * 2**20

# `Name <addr>`: the last <...> on the line is the address, whatever the name holds.
_NAMED = re.compile(r"(?P<name>.*?)\s*<(?P<address>[^<>]*)>")
_SPECIALS = frozenset('"\\,;:<>@()[]')
EMAIL_COLUMNS = ("email", "email address", "e-mail")
NAME_COLUMNS = ("name", "full name")


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str = ""
    # The CSV's other columns by merge-field name ({"post_code": "AB1 2CD"}).
    fields: Mapping[str, str] = field(default_factory=dict, compare=False)

    def as_line(self) -> str:
        """The recipient as a line read_lines reads back, e.g. `"Smith, Jo" <jo@example.org>`."""
        if not self.name:
            return self.email
        name = self.name
        if any(character in _SPECIALS for character in name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.email}>"


@dataclass(frozen=True, slots=True)
class Problem:
    where: str  # "line 3" or "row 4 of people.csv"
    text: str  # what was written there, so the user can find and fix it
    reason: str


@dataclass
class RecipientList:
    recipients: list[Recipient] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    duplicates: int = 0  # entries merged into an earlier one with the same address
    columns: list[str] = field(default_factory=list)  # merge fields the CSV provides
    _seen: dict[str, int] = field(default_factory=dict, repr=False)

    def add(
        self,
        where: str,
        text: str,
        address: str,
        name: str,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        name = name.strip()
        if len(name) > MAX_NAME_LENGTH:
            self.problems.append(
                Problem(where, text, f"The name is longer than {MAX_NAME_LENGTH} characters.")
            )
            return
        breaking = header_breaking_character(name)
        if breaking is not None:
            # A CSV cell can hold a line break; in a To header it would start a new header, or
            # make the message impossible to build.
            self.problems.append(
                Problem(
                    where,
                    text,
                    "The name contains a line break or a control character "
                    f"({describe_character(breaking)}).",
                )
            )
            return
        try:
            # Plain ASCII addresses only (international domains become their xn-- form): most
            # servers, Office 365 submission included, do not offer SMTPUTF8.
            checked = validate_email(
                address.strip(), check_deliverability=False, allow_smtputf8=False
            )
        except EmailNotValidError as error:
            self.problems.append(Problem(where, text, _reason(address, error)))
            return
        email = checked.ascii_email or checked.normalized
        key = email.lower()
        if key in self._seen:
            self.duplicates += 1
            index = self._seen[key]
            earlier = self.recipients[index]
            if (name and not earlier.name) or (fields and not earlier.fields):
                self.recipients[index] = Recipient(
                    earlier.email, earlier.name or name, earlier.fields or fields or {}
                )
            return
        self._seen[key] = len(self.recipients)
        self.recipients.append(Recipient(email, name, fields or {}))

    def add_columns(self, names: Iterable[str]) -> None:
        self.columns.extend(name for name in names if name not in self.columns)

    def carried_fields(self) -> str:
        """The CSV's merge values, to carry through a compose shown again (a browser cannot put
        the file back in the form): see `attach_fields`. Each address's values in the order of
        the columns, as JSON, deflated and in base64: a 50,000-row file's columns then fit in
        one form field and weigh little on the page."""
        document = {
            "columns": self.columns,
            "rows": {
                r.email.lower(): [r.fields.get(column, "") for column in self.columns]
                for r in self.recipients
                if r.fields
            },
        }
        packed = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return base64.b64encode(zlib.compress(packed)).decode("ascii")

    def attach_fields(self, carried: str) -> None:
        """Give typed recipients the merge values a previous showing of the form carried;
        anything else in the field (it comes back from the browser) is ignored."""
        document = _unpacked(carried)
        rows = document.get("rows")
        columns = document.get("columns")
        if not isinstance(rows, dict) or not isinstance(columns, list):
            return
        names = [str(name) for name in columns]
        self.add_columns(names)
        for index, recipient in enumerate(self.recipients):
            values = rows.get(recipient.email.lower())
            if isinstance(values, list) and not recipient.fields:
                self.recipients[index] = Recipient(
                    recipient.email,
                    recipient.name,
                    {name: str(value) for name, value in zip(names, values, strict=False)},
                )

    @property
    def too_many(self) -> bool:
        return len(self.recipients) > MAX_RECIPIENTS

    def as_text(self) -> str:
        """Problems first (as written, to be fixed), then every good recipient, one a line."""
        lines = [problem.text for problem in self.problems]
        lines.extend(recipient.as_line() for recipient in self.recipients)
        return "\n".join(lines)

    def rewrite(self) -> str:
        """`as_text`, for the recipients box shown again in its place: each problem is now
        placed by its line in that text (a file's row also by where it came from), since the
        lines the user typed have moved."""
        line = 1
        placed = []
        for problem in self.problems:
            where = f"line {line}"
            if not problem.where.startswith("line "):
                where += f" ({problem.where})"
            placed.append(replace(problem, where=where))
            # As read_lines will count it: a CSV cell may hold a line break.
            line += len(problem.text.splitlines()) or 1
        self.problems = placed
        return self.as_text()


def _unpacked(carried: str) -> dict:
    """What carried_fields packed; an empty document for anything that is not."""
    try:
        inflater = zlib.decompressobj()
        packed = inflater.decompress(base64.b64decode(carried, validate=True), MAX_CARRIED_BYTES)
        document = None if inflater.unconsumed_tail else json.loads(packed)
    except (ValueError, zlib.error):  # base64, UTF-8 and JSON errors are ValueErrors
        return {}
    return document if isinstance(document, dict) else {}


class UnreadableFile(ValueError):
    """The uploaded file cannot be read as a recipients CSV; the message says what to do."""


def _reason(address: str, error: EmailNotValidError) -> str:
    if not address.strip():
        return "There is no email address."
    if address.count("@") > 1 and any(sep in address for sep in ", ;"):
        return "Put each address on its own line."
    return str(error)


def read_lines(text: str, into: RecipientList | None = None) -> RecipientList:
    """Read typed recipients: one a line, `addr` or `Name <addr>`; blank lines are skipped."""
    result = into if into is not None else RecipientList()
    for number, raw in enumerate(text.splitlines(), start=1):
        # Lists pasted from Outlook end each entry with a separator.
        line = raw.strip().rstrip(",;").strip()
        if not line:
            continue
        name, address = _split(line)
        result.add(f"line {number}", raw.strip(), address, name)
    return result


def _split(line: str) -> tuple[str, str]:
    match = _NAMED.fullmatch(line)
    if match is None:
        return "", line
    name = match["name"].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return name, match["address"]


def read_csv(data: bytes, filename: str, into: RecipientList | None = None) -> RecipientList:
    """Read a CSV with an `email` column and an optional `name` column (UTF-8, BOM or not)."""
    result = into if into is not None else RecipientList()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableFile(
            f"{filename} is not UTF-8 text. In Excel, save it with “Save as type: CSV UTF-8 "
            "(Comma delimited)” and upload it again."
        ) from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None:
        raise UnreadableFile(f"{filename} is empty.")
    columns = [column.strip().lower() for column in header]
    email_at = _column(columns, EMAIL_COLUMNS)
    if email_at is None:
        raise UnreadableFile(
            f"{filename} has no “email” column. The first row must name the columns, e.g. "
            "“email,name”."
        )
    name_at = _column(columns, NAME_COLUMNS)
    # Every other column is a merge field, by its header.
    extra = {
        at: column_key(column)
        for at, column in enumerate(columns)
        if at not in (email_at, name_at) and column_key(column)
    }
    result.add_columns(extra.values())
    read = 0
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        read += 1
        if read > MAX_RECIPIENTS:
            # Stopped here: checking every address of a larger file would hold the request.
            raise UnreadableFile(
                f"{filename} has more than {MAX_RECIPIENTS:,} rows. A send can have at most "
                f"{MAX_RECIPIENTS:,} recipients; bulk email belongs in MailChimp."
            )
        address = row[email_at] if email_at < len(row) else ""
        name = row[name_at] if name_at is not None and name_at < len(row) else ""
        fields = {key: row[at].strip() if at < len(row) else "" for at, key in extra.items()}
        # Written as a line so that, shown back in the recipients box, it reads like the others.
        as_line = Recipient(address.strip(), name.strip()).as_line()
        result.add(f"row {number} of {filename}", as_line, address, name, fields)
    return result


def _column(columns: list[str], names: Iterable[str]) -> int | None:
    for name in names:
        if name in columns:
            return columns.index(name)
    return None


def collect(
    text: str,
    upload: bytes | None = None,
    filename: str = "",
    carried: str = "",
) -> RecipientList:
    """The typed recipients (with the merge values a previous showing of the form carried),
    then the uploaded file's, merged into one list (UnreadableFile when the file cannot be
    read)."""
    result = read_lines(text)
    if carried:
        result.attach_fields(carried)
    if upload:
        read_csv(upload, filename or "the file", result)
    return result
