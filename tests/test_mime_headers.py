"""The message builder refuses, with a reason, every header value that would split a line or
carries a control character: what the email package would otherwise raise on mid-job, or fold
into a header of the sender's choosing."""

from __future__ import annotations

import pytest

from lamplight_mail.delivery.mime import HeaderInjection, header_problem
from lamplight_mail.delivery.send_template import SendTemplate

LINE_SPLITTERS = ["\r", "\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
OTHER_CONTROLS = ["\x00", "\t", "\x1b", "\x7f", "\x9b"]


def test_every_character_str_splitlines_splits_at_is_refused():
    for character in map(chr, range(0x3000)):
        splits = len(f"a{character}b".splitlines()) > 1
        assert splits == (character in LINE_SPLITTERS)
    for character in LINE_SPLITTERS:
        assert header_problem(f"Spring{character}appeal") == (
            f"a line break (U+{ord(character):04X}) is not allowed in a mail header"
        )


@pytest.mark.parametrize("character", OTHER_CONTROLS)
def test_control_characters_are_refused(character):
    assert header_problem(f"Spring{character}appeal") == (
        f"a control character (U+{ord(character):04X}) is not allowed in a mail header"
    )


@pytest.mark.parametrize("subject", ["Spring appeal", "Appel de printemps — été", "日本語の件名"])
def test_ordinary_subjects_pass(subject):
    assert header_problem(subject) is None
    assert SendTemplate(
        from_email="a@charity.example", from_name="A", subject=subject, body_text="Hi"
    ).render("b@example.org", "B", "<id@charity.example>")


@pytest.mark.parametrize(
    "field", ["subject", "from_name", "from_email"], ids=["subject", "from name", "from address"]
)
@pytest.mark.parametrize("character", LINE_SPLITTERS + OTHER_CONTROLS)
def test_the_builder_refuses_them_in_every_header(field, character):
    values = {
        "from_email": "a@charity.example",
        "from_name": "A",
        "subject": "Spring appeal",
        "body_text": "Hi",
    }
    values[field] = f"x{character}y"
    with pytest.raises(HeaderInjection, match=f"U\\+{ord(character):04X}"):
        SendTemplate(**values)


@pytest.mark.parametrize("character", ["\u2028", "\x0b", "\r\n"])
def test_a_recipients_own_headers_are_checked_too(character):
    template = SendTemplate(
        from_email="a@charity.example", from_name="A", subject="Hello", body_text="Hi"
    )
    with pytest.raises(HeaderInjection):
        template.render("b@example.org", f"Bo{character}Bcc: x@example.org", "<id@x>")
