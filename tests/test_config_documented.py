"""Every environment variable the app reads is in the README's configuration table: a deployer
reads that table, not config.py."""

from __future__ import annotations

import re

from cryptography.fernet import Fernet

from lamplight_mail.config import PRODUCTION, load_config
from tests.workers import PROJECT_ROOT


class Recording(dict):
    """An environment that notes every name looked up in it, set or not."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, name, default=None):
        self.read.add(name)
        return super().get(name, default)

    def __getitem__(self, name):
        self.read.add(name)
        return super().__getitem__(name)


def _names_read_by_config(tmp_path) -> set[str]:
    development = Recording({})
    load_config(str(tmp_path), development)
    production = Recording(
        {
            "LAMPLIGHT_MAIL_ENV": PRODUCTION,
            "SECRET_KEY": "x" * 48,
            "LAMPLIGHT_MAIL_KEYS": Fernet.generate_key().decode(),
            "LAMPLIGHT_MAIL_METRICS_TOKEN": "token",
            "DATABASE_URL": "postgresql+psycopg://lamplight@db/lamplight_mail",
            "REDIS_URL": "redis://redis:6379/0",
        }
    )
    load_config(str(tmp_path), production)
    return development.read | production.read


def _names_in_the_package() -> set[str]:
    """LAMPLIGHT_MAIL_ names quoted anywhere in the package (the instance folder, the catcher's
    password: read outside config.py)."""
    found = set()
    for path in (PROJECT_ROOT / "lamplight_mail").rglob("*.py"):
        found |= set(re.findall(r"[\"'](LAMPLIGHT_MAIL_[A-Z_]+)[\"']", path.read_text()))
    return found


def _configuration_table() -> set[str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


def test_every_variable_the_app_reads_is_in_the_readme_configuration_table(tmp_path):
    read = _names_read_by_config(tmp_path) | _names_in_the_package()
    assert {"DATABASE_URL", "LAMPLIGHT_MAIL_WORKER_CONNECTIONS", "LAMPLIGHT_MAIL_INSTANCE"} <= read
    missing = read - _configuration_table()
    assert not missing, f"not in README's Configuration table: {sorted(missing)}"
