"""Issue 10, item 17: the compose file's Redis requires a password, and the app is given it."""

from __future__ import annotations

import re

from tests.workers import PROJECT_ROOT


def test_compose_redis_requires_the_password_the_app_uses():
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert re.search(r'"--requirepass", "\$\{REDIS_PASSWORD:\?', compose)
    url = re.search(r"REDIS_URL: (\S+)", compose).group(1)
    assert url.startswith("redis://:${REDIS_PASSWORD:?")
    assert "REDIS_PASSWORD=" in (PROJECT_ROOT / ".env.example").read_text()
