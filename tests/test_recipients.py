"""Reading the recipients of a compose: typed lines and CSV uploads."""

from __future__ import annotations

import base64
import zlib

import pytest

from lamplight_mail.recipients import (
    MAX_CARRIED_BYTES,
    Recipient,
    UnreadableFile,
    collect,
    read_csv,
    read_lines,
)


def _emails(listing) -> list[str]:
    return [recipient.email for recipient in listing.recipients]


def test_lines_take_an_address_or_a_name_and_an_address():
    listing = read_lines(
        "amy@example.org\n"
        "  Bo Ørsted <bo@example.org>  \n"
        '"Smith, Jo" <jo@example.org>\n'
        "\n"
        "cy@example.org;\n"  # pasted from Outlook
    )
    assert listing.recipients == [
        Recipient("amy@example.org", ""),
        Recipient("bo@example.org", "Bo Ørsted"),
        Recipient("jo@example.org", "Smith, Jo"),
        Recipient("cy@example.org", ""),
    ]
    assert listing.problems == []


def test_repeated_addresses_are_merged_whatever_their_case_keeping_a_name():
    listing = read_lines(
        "amy@example.org\nAmy Ng <AMY@Example.org>\nbo@example.org\nAMY@example.org"
    )
    assert listing.recipients == [
        Recipient("amy@example.org", "Amy Ng"),
        Recipient("bo@example.org", ""),
    ]
    assert listing.duplicates == 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not an address", "An email address must have an @-sign."),
        ("jo@example", "It should have a period."),
        ("Jo <>", "There is no email address."),
        ("amy@example.org, bo@example.org", "Put each address on its own line."),
        ("x" * 121 + " <long@example.org>", "The name is longer than 120 characters."),
    ],
)
def test_a_bad_line_is_listed_with_where_it_is_and_why(line, reason):
    listing = read_lines(f"amy@example.org\n{line}")
    (problem,) = listing.problems
    assert problem.where == "line 2"
    assert problem.text == line
    assert reason in problem.reason
    assert _emails(listing) == ["amy@example.org"]


def test_international_domains_are_sent_in_their_ascii_form():
    listing = read_lines("Zoë <zoe@bücher.example>")
    assert listing.recipients == [Recipient("zoe@xn--bcher-kva.example", "Zoë")]


def test_a_csv_with_a_byte_order_mark_and_a_name_column_is_read():
    data = "\ufeffName,Email\nZoë Ørsted,zoe@example.org\n,\nBo,bo@example.org\n".encode()
    listing = read_csv(data, "people.csv")
    assert listing.recipients == [
        Recipient("zoe@example.org", "Zoë Ørsted"),
        Recipient("bo@example.org", "Bo"),
    ]


def test_a_csv_without_a_byte_order_mark_or_a_name_column_is_read():
    listing = read_csv(b"email\r\namy@example.org\r\n", "people.csv")
    assert listing.recipients == [Recipient("amy@example.org", "")]


def test_bad_csv_rows_name_the_row_and_read_back_as_a_line():
    listing = read_csv(b'email,name\nnot-valid,"Smith, Jo"\n', "people.csv")
    (problem,) = listing.problems
    assert problem.where == "row 2 of people.csv"
    assert problem.text == '"Smith, Jo" <not-valid>'
    assert read_lines(problem.text).problems[0].text == problem.text


def test_a_name_with_a_line_break_cannot_reach_a_header():
    listing = read_csv(b'email,name\namy@example.org,"Amy\nBcc: all@example.org"\n', "x.csv")
    assert listing.recipients == []
    assert listing.problems[0].reason.startswith("The name contains a line break")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("email,name\nzoe@example.org,Zoë\n".encode("cp1252"), "is not UTF-8 text"),
        (b"", "is empty"),
        (b"address\namy@example.org\n", "has no \u201cemail\u201d column"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_with_what_to_do(data, message):
    with pytest.raises(UnreadableFile, match=message):
        read_csv(data, "people.csv")


def test_typed_and_uploaded_recipients_are_merged_and_shown_back_problems_first():
    listing = collect("amy@example.org\nbad line", b"email,name\nAMY@example.org,Amy\n", "p.csv")
    assert listing.recipients == [Recipient("amy@example.org", "Amy")]
    assert listing.as_text() == "bad line\nAmy <amy@example.org>"
    assert read_lines(listing.as_text()).recipients == listing.recipients


def test_merge_values_carried_through_the_form_come_back_to_the_same_people():
    first = collect("", b"email,name,Post code\nzoe@example.org,Zo\xc3\xab,AB1 2CD\n", "p.csv")
    again = collect(first.as_text() + "\namy@example.org", carried=first.carried_fields())
    assert again.columns == ["post_code"]
    assert [dict(r.fields) for r in again.recipients] == [{"post_code": "AB1 2CD"}, {}]


@pytest.mark.parametrize(
    "carried",
    [
        "not base64 at all!",
        base64.b64encode(b"not deflated").decode(),
        base64.b64encode(zlib.compress(b"[1, 2]")).decode(),  # JSON, not what the form wrote
        # Deflates to more than any form wrote: not unpacked in full, not read.
        base64.b64encode(zlib.compress(b" " * (MAX_CARRIED_BYTES + 1))).decode(),
    ],
    ids=["garbage", "not-deflated", "not-a-document", "too-large"],
)
def test_carried_values_that_are_not_what_the_form_wrote_are_ignored(carried):
    listing = collect("zoe@example.org", carried=carried)
    assert listing.columns == [] and listing.recipients == [Recipient("zoe@example.org")]


def test_shown_back_each_problem_is_placed_by_its_line_in_the_new_text():
    upload = b'email,name\nnot-valid,Jo\namy@example.org,"Two\nlines"\nbad@,Bo\n'
    listing = collect("ok@example.org\n\ntyped wrong", upload, "p.csv")
    text = listing.rewrite()
    lines = text.splitlines()
    assert [problem.where for problem in listing.problems] == [
        "line 1",
        "line 2 (row 2 of p.csv)",
        "line 3 (row 3 of p.csv)",  # its name's line break takes it onto two lines
        "line 5 (row 4 of p.csv)",
    ]
    for problem in listing.problems:
        number = int(problem.where.split()[1])
        assert lines[number - 1] == problem.text.splitlines()[0]
