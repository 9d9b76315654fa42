"""The limiter's cost: decisions per second from one client against a real (embedded) Redis.

`python -m bench.limiter` prints, measured in one run (best of several repeats): a bare Redis
round trip (the floor every check pays), `limits.acquire` with the limits not binding on an empty
window and on a window already holding 10,000 recipients (Office 365's whole day), `refund`,
`usage`, and a connection slot's renewal; each as operations per second and as a multiple of the
bare round trip.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

from lamplight_mail import create_app
from lamplight_mail.delivery import limits
from lamplight_mail.dev import embedded_redis
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import EmailAccount
from tests.factories import make_account, make_user

ROUNDS = 2_000
REPEATS = 5  # the best of several runs: the machine is shared, and noise only ever slows
FULL_WINDOW = 10_000


def _rate(operation: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Operations per second over `rounds` calls, the best of REPEATS runs after a warm-up."""
    for _ in range(100):
        operation()
    best = 0.0
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(rounds):
            operation()
        best = max(best, rounds / (time.perf_counter() - started))
    return best


def _account(name: str, daily_limit: int) -> EmailAccount:
    """An operator's own account whose per-minute limit never binds."""
    owner = make_user(f"{name}@charity.example")
    return make_account(owner=owner, daily_limit=daily_limit, per_minute_limit=10_000_000)


def measure() -> list[tuple[str, float]]:
    client = get_redis()
    empty = _account("empty", daily_limit=100_000_000)
    full = _account("full", daily_limit=100_000_000)
    assert limits.acquire(full, recipients=FULL_WINDOW).allowed
    slot = limits.ConnectionSlot(client, empty, lease_seconds=60)

    def acquire_and_refund() -> None:
        limits.refund(limits.acquire(empty).reservation)

    return [
        ("Redis PING round trip", _rate(client.ping)),
        ("acquire, empty window", _rate(lambda: limits.acquire(empty))),
        (f"acquire, {FULL_WINDOW:,} in the window", _rate(lambda: limits.acquire(full))),
        ("acquire + refund", _rate(acquire_and_refund)),
        ("usage (dashboard figures)", _rate(lambda: limits.usage(full))),
        ("connection slot renewal", _rate(slot.renew)),
    ]


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="lm-bench-"))
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.sqlite'}",
                "REDIS_URL": embedded_redis.ensure_running(folder / "redis", persist=False),
                "FERNET_KEYS": [Fernet.generate_key().decode()],
            }
        )
        with app.app_context():
            db.create_all()
            figures = measure()
            db.engine.dispose()
    finally:
        embedded_redis.stop(folder / "redis")
        shutil.rmtree(folder, ignore_errors=True)

    floor = figures[0][1]
    print("limiter: decisions per second from one client (embedded Redis, unix socket)")
    for name, rate in figures:
        print(f"  {name:<34} {rate:>10,.0f}/s   {floor / rate:>5.2f}x a round trip")


if __name__ == "__main__":
    main()
