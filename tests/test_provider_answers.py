"""Every row of PROVIDERS.md's table of server answers, as the worker acts on it.

The worker (delivery/job.py) reads an answer in this order: a provider quota or rate
(providers.provider_limit) holds the whole account until the named moment, its mail untried; an
answer about the account (AnswerKind.PAUSE_ACCOUNT) pauses it until a successful test or Resume;
any other 4xx is retried with backoff and any other 5xx fails that message only. The worker
tests (test_account_status.py, test_worker_faults.py, test_worker_limits.py) prove each of those
three behaviours end to end; this file proves which behaviour each answer gets, with its advice.
"""

from __future__ import annotations

import re

import pytest

from lamplight_mail.providers import AnswerKind, interpret, provider_limit

HOLD, PAUSE, RETRY, FAIL = "hold", "pause", "retry", "fail"

# (the server's answer, what the worker does, a phrase of the advice, the hold in seconds)
TABLE = [
    ("535 5.7.3 Authentication unsuccessful", PAUSE, "app password", None),
    (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        "Tenant.",
        PAUSE,
        "Authenticated SMTP",
        None,
    ),
    (
        "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
        "authenticated successfully.",
        PAUSE,
        "OAuth",
        None,
    ),
    (
        "550 5.7.30 Basic authentication is not supported for Client Submission",
        PAUSE,
        "OAuth",
        None,
    ),
    ("530 5.7.57 Client not authenticated to send mail", PAUSE, "TLS on port 587", None),
    (
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        PAUSE,
        "Send As",
        None,
    ),
    ("554 5.2.252 SendAsDenied; the sender is not allowed", PAUSE, "Send As", None),
    (
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
        HOLD,
        "10,000 recipients in 24 hours",
        None,  # until the account's oldest sends leave the rolling 24 hours
    ),
    (
        "550 5.7.233 Message can't be sent: tenant external recipient rate limit exceeded",
        HOLD,
        "every mailbox",
        3600,
    ),
    ("432 4.3.2 Concurrent connections limit exceeded", HOLD, "3", 60),
    (
        "550 5.2.251 Sender throttled due to continuous invalid recipients errors",
        PAUSE,
        "throttling",
        None,
    ),
    (
        "550 5.2.255 Sender throttled due to continuous send as denied errors",
        PAUSE,
        "throttling",
        None,
    ),
    ("554 5.2.2 mailbox full", PAUSE, "full", None),
    ("421 4.7.66 TLS 1.0 and 1.1 are not supported", PAUSE, "TLS 1.2", None),
    ("550 5.1.8 Access denied, bad outbound sender", PAUSE, "Restricted users", None),
    ("534 5.7.9 Application-specific password required", PAUSE, "app password", None),
    ("535 5.7.8 Username and Password not accepted", PAUSE, "app password", None),
    ("550 5.4.5 Daily user sending limit exceeded", HOLD, "24 hours", None),
    # Issue 12's answers about the account, not the message.
    (
        "538 5.7.11 Encryption required for requested authentication mechanism",
        PAUSE,
        "encrypted",
        None,
    ),
    ("530 5.7.0 Authentication required", PAUSE, "sign in", None),
    # Neither: about one message.
    ("451 4.3.0 Temporary server error, try again later", RETRY, None, None),
    ("550 5.1.1 User unknown", FAIL, None, None),
]


def _split(answer: str) -> tuple[int, str]:
    code, text = answer.split(" ", 1)
    return int(code), text


def worker_behaviour(answer: str) -> str:
    """What delivery/job.py does with the answer, in its own order of checks."""
    code, text = _split(answer)
    if provider_limit(code, answer) is not None:
        return HOLD
    kind = interpret(code, text).kind
    if kind == AnswerKind.PAUSE_ACCOUNT:
        return PAUSE
    return RETRY if kind == AnswerKind.TEMPORARY else FAIL


@pytest.mark.parametrize("answer,behaviour,advice,hold", TABLE, ids=[row[0][:14] for row in TABLE])
def test_each_answer_gets_its_behaviour_and_advice(answer, behaviour, advice, hold):
    assert worker_behaviour(answer) == behaviour
    code, text = _split(answer)
    hint = interpret(code, text).hint
    if advice is None:
        assert hint is None
    else:
        assert hint is not None and advice in hint
    if behaviour == HOLD:
        assert provider_limit(code, answer).hold_seconds == hold


def test_the_table_in_providers_md_is_covered_row_by_row():
    """Each enhanced status code PROVIDERS.md lists appears in a row above."""
    listed = {
        "5.7.3", "5.7.139", "5.7.30", "5.7.57", "5.7.60", "5.2.252", "5.2.0", "5.7.233",
        "4.3.2", "5.2.251", "5.2.255", "5.2.2", "4.7.66", "5.1.8", "5.7.9", "5.7.8", "5.4.5",
    }  # fmt: skip
    covered = {re.search(r"\d\.\d\.\d+", answer).group(0) for answer, *_ in TABLE}
    assert listed <= covered
