"""The worker process's connection threads: up to WORKER_CONNECTIONS deliveries (one account
and one SMTP connection each) in flight at once in one process.

Threads rather than asyncio: smtplib, the claims, the limiter and the database code are all
blocking and synchronous, and a delivery spends nearly all its time waiting on the SMTP server
(the GIL is released while it waits). A thread per connection reuses that code unchanged, with
the same guarantees, and a stalled server holds up only its own thread.

The RQ job (job.deliver) hands its account to a free thread here and returns at once; the
worker takes a job off the queue only when a thread is free for it, so work this process cannot
start yet stays on the queue for other workers. Every limit lives in Redis and every claim in
the database, so they hold across threads exactly as across processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

log = logging.getLogger(__name__)


class Connections:
    """A bounded set of delivery threads, each running its work in an app context of its own
    (so each has its own database session)."""

    def __init__(self, app: Flask, size: int) -> None:
        if size < 1:
            raise ValueError("a worker needs at least one connection")
        self.size = size
        self._app = app
        self._busy = 0
        self._changed = threading.Condition()
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="delivery")

    @property
    def busy(self) -> int:
        with self._changed:
            return self._busy

    def wait_for_room(self, timeout: float) -> bool:
        """Until a thread is free (True) or `timeout` seconds passed (False). Only the worker's
        own loop starts work, so room found here is still there when it starts the next job."""
        with self._changed:
            return self._changed.wait_for(lambda: self._busy < self.size, timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Until every thread is done (True) or `timeout` seconds passed (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._busy == 0, timeout)

    def start(self, work: Callable[..., object], *args: object) -> None:
        """Run `work(*args)` on a free thread (never queued behind the others: see
        wait_for_room)."""
        with self._changed:
            self._busy += 1
        self._executor.submit(self._run, work, args)

    def _run(self, work: Callable[..., object], args: tuple) -> None:
        try:
            with self._app.app_context():
                work(*args)
        except Exception:
            # RQ no longer watches this work: its failure is logged here, and the sweep picks
            # up whatever it left due.
            log.exception("delivery %s failed", args)
        finally:
            with self._changed:
                self._busy -= 1
                self._changed.notify_all()

    def close(self) -> None:
        """Wait for every thread to finish: on a stop request each ends the message on the wire
        and gives the rest back."""
        self._executor.shutdown(wait=True)


_current: Connections | None = None


def install(app: Flask, size: int) -> Connections:
    """Make this process's deliveries run on `size` threads (the worker does, at start)."""
    global _current
    _current = Connections(app, size)
    return _current


def uninstall() -> None:
    global _current
    _current = None


def current() -> Connections | None:
    """The process's connection threads; None outside a worker (a job then runs inline)."""
    return _current
