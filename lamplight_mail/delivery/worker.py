"""Runs an RQ worker (with its scheduler) on the mail queue, inside an app context, and sweeps
the outbox for due work that has no job."""

from __future__ import annotations

import argparse
import logging

from redis import RedisError
from rq import SimpleWorker
from sqlalchemy.exc import SQLAlchemyError

from lamplight_mail import create_app
from lamplight_mail.delivery import outbox, scheduling
from lamplight_mail.extensions import db, get_redis

log = logging.getLogger(__name__)


class MailWorker(SimpleWorker):
    """An RQ worker that runs jobs in its own process and sweeps the outbox as it idles.

    No work horse is forked per job: delivery is I/O bound, keeps its database pool and SMTP
    connection warm between batches, and a worker killed outright takes its SMTP exchange with
    it (a forked horse would carry on, orphaned).

    The sweep rides on RQ's maintenance step, which every worker runs between jobs and at least
    once per dequeue timeout; a Redis lock lets one worker sweep per MAIL_SWEEP_SECONDS. Unlike
    a self-rescheduling job, it cannot be lost with Redis's contents: any running worker sweeps.
    """

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        sweep()


def sweep(*, force: bool = False) -> None:
    # A database or Redis outage must not stop the worker: the next sweep tries again.
    try:
        scheduling.start_due()  # scheduled sends now due join the outbox first
        enqueued = outbox.sweep(force=force)
    except (SQLAlchemyError, RedisError):
        log.exception("outbox sweep failed; retrying at the next one")
        return
    finally:
        db.session.remove()  # like the end of a request: nothing stays open between jobs
    if enqueued:
        log.info("outbox sweep enqueued delivery for accounts %s", enqueued)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send queued Lamplight mail.")
    parser.add_argument("--burst", action="store_true", help="drain what is due, then exit")
    args = parser.parse_args(argv)

    app = create_app()
    with app.app_context():
        interval = app.config["MAIL_SWEEP_SECONDS"]
        worker = MailWorker(
            [outbox.mail_queue()],
            connection=get_redis(app),
            maintenance_interval=interval,
            # RQ blocks on the queue for worker_ttl - 15 seconds: wake up in time to sweep.
            worker_ttl=interval + 15,
        )
        if args.burst:
            sweep(force=True)  # whatever is due now, lost jobs included, then drain it
        worker.work(burst=args.burst, with_scheduler=True)
    return 0
