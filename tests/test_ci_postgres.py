"""The suite itself: PostgreSQL tests are never silently left out. A plain run without
TEST_DATABASE_URL says they were skipped; under CI they fail the run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.workers import PROJECT_ROOT

# One small test that runs on both databases.
TARGET = "tests/test_large_numbers.py::test_a_post_to_an_id_past_64_bits_is_not_found"


def _run_without_postgres(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "CI")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TARGET],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_plain_run_says_the_postgresql_tests_were_skipped():
    result = _run_without_postgres()
    assert result.returncode == 0, result.stdout[-3000:]
    assert "SKIPPED" in result.stdout and "PostgreSQL tests need TEST_DATABASE_URL" in (
        result.stdout
    )


@pytest.mark.slow
def test_under_ci_skipped_postgresql_tests_fail_the_run():
    result = _run_without_postgres(CI="true")
    assert result.returncode != 0
    assert "CI must run the PostgreSQL tests" in result.stdout
