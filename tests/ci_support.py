"""Tests that cannot run here are skipped with the reason on a developer's machine, but fail
under CI (the CI environment variable set), where a skip would hide that they never ran."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str, what: str) -> NoReturn:
    """Skip (or, under CI, fail) the test: `reason` says why, `what` names the tests."""
    if in_ci():
        pytest.fail(f"{reason}; CI must run the {what}, so this is a failure", pytrace=False)
    pytest.skip(reason)
