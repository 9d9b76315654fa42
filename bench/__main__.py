"""Run every benchmark in one go, each printing the figures and ratios it measured."""

from __future__ import annotations

import importlib

# Each module has a main() that sets up what it needs (embedded Redis, a temporary database).
MODULES = (
    "bench.throughput",
    "bench.one_account",
    "bench.accounts",
    "bench.limiter",
    "bench.dashboard",
)


def main() -> None:
    for name in MODULES:
        print(f"== {name}", flush=True)
        importlib.import_module(name).main()


if __name__ == "__main__":
    main()
