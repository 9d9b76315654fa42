"""Runs an RQ worker (with its scheduler) on the mail queue, inside an app context, and sweeps
the outbox for due work that has no job; `--check` tells whether this host's worker is alive."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import socket
import sys
import time
from datetime import timedelta

from flask import Flask
from redis import Redis, RedisError
from redis.client import Pipeline
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.utils import now
from sqlalchemy.exc import SQLAlchemyError

from lamplight_mail import create_app
from lamplight_mail.delivery import connections, outbox, scheduling
from lamplight_mail.delivery import job as delivery_job
from lamplight_mail.extensions import db, get_redis

log = logging.getLogger(__name__)

# While every connection thread is busy, the worker looks for a free one this often.
ROOM_CHECK_SECONDS = 1.0
# A burst worker whose queue ran dry looks this often for jobs its own threads queued.
BURST_QUEUE_CHECK_SECONDS = 0.05
# RQ blocks on the queue for its TTL less 15 seconds: a worker whose TTL is the sweep interval
# plus this wakes in time to sweep, and heartbeats at least that often.
TTL_MARGIN_SECONDS = 15


class MailWorker(SimpleWorker):
    """An RQ worker that runs jobs in its own process and sweeps the outbox as it idles.

    No work horse is forked per job: delivery is I/O bound, keeps its database pool and SMTP
    connection warm between batches, and a worker killed outright takes its SMTP exchange with
    it (a forked horse would carry on, orphaned).

    The sweep rides on RQ's maintenance step, which every worker runs between jobs and at least
    once per dequeue timeout; a Redis lock lets one worker sweep per MAIL_SWEEP_SECONDS. Unlike
    a self-rescheduling job, it cannot be lost with Redis's contents: any running worker sweeps.

    Redis may go away at any moment (a restart, a failover). RQ keeps only its bookkeeping there
    (registries, heartbeats, results); the mail's state is in the database. So a Redis error in
    that bookkeeping is logged and ridden out, never allowed to end the worker: it waits for
    Redis to come back (RQ retries the queue itself), and the sweep then re-enqueues whatever
    the outage left without a job.

    SIGTERM (docker compose stop, systemd) stops it within seconds: each delivery thread sends
    the message on the wire to its end and gives the rest of its batch back, due now, for
    another worker.

    Jobs run on the process's connection threads (connections.py): a job is taken off the queue
    only when a thread is free for it, so what this process cannot start yet stays on the queue
    for the other workers.
    """

    # RQ's wait between attempts to reach Redis grows to this: back within seconds of an outage.
    max_connection_wait_time = 5.0

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        delivery_job.stop_requested.set()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        threads = connections.current()
        while threads is not None and not threads.wait_for_room(ROOM_CHECK_SECONDS):
            # Every thread busy: stay alive in RQ's eyes, and keep sweeping, meanwhile.
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except RedisError as error:
            log.warning("job %s: RQ could not record its end in Redis: %s", job.id, error)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        try:
            super().heartbeat(timeout, pipeline)
        except RedisError as error:
            log.warning("worker heartbeat not recorded: %s", error)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except RedisError as error:
            log.warning("cannot check for suspension: %s", error)

    def teardown(self) -> None:
        # RQ's own steps, each on its own: one that cannot reach Redis must not skip the rest.
        steps = [self.stop_scheduler] if self.scheduler else []
        for step in [*steps, self.register_death, self.unsubscribe]:
            try:
                step()
            except RedisError as error:
                log.warning("worker shutdown, %s: %s", step.__name__, error)

    def unsubscribe(self) -> None:
        if self.pubsub_thread:
            with contextlib.suppress(RedisError):
                self.pubsub.unsubscribe()
            # The listening thread stops whether or not Redis heard the goodbye.
            self.pubsub_thread.stop()
            self.pubsub_thread.join(timeout=1)
            with contextlib.suppress(RedisError):
                self.pubsub.close()

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except RedisError as error:
            log.warning("RQ maintenance skipped: %s", error)
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


def parser() -> argparse.ArgumentParser:
    """The worker's command line (docker-compose.yml's health check is checked against it)."""
    commands = argparse.ArgumentParser(description="Send queued Lamplight mail.")
    mode = commands.add_mutually_exclusive_group()
    mode.add_argument("--burst", action="store_true", help="drain what is due, then exit")
    mode.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if a worker on this host has a fresh heartbeat in Redis, else 1 "
        "(a container health check)",
    )
    return commands


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    app = create_app()
    if args.check:
        with app.app_context():
            return check_alive(app)
    # The app, its models and its libraries are with the process for good: moved out of the
    # collector's sight, since otherwise every full collection walks all of them again (a
    # tenth of the worker's CPU while it sends).
    gc.collect()
    gc.freeze()
    threads = connections.install(app, app.config["WORKER_CONNECTIONS"])
    try:
        with app.app_context():
            return _work(app, args.burst, threads)
    finally:
        threads.close()  # every thread ends its message on the wire (and gives the rest back)
        connections.uninstall()


def check_alive(app: Flask) -> int:
    """0 when a worker on this host has heartbeated within its TTL (said on stdout, with how
    many), else 1 (said on stderr).

    The heartbeat is RQ's own, written from the worker's main loop before every wait on the
    queue and every second while all its threads are busy: a worker that is stopped
    (SIGSTOP), hung in that loop, dead, or cannot reach Redis (so cannot take work) has none
    that fresh. The key RQ keeps per worker outlives it by a minute, so its age is what counts.
    A container holds one worker, so "this host" is this worker; on a host running several, it
    says whether any of them is alive.
    """
    limit = timedelta(seconds=_ttl(app))
    try:
        workers = Worker.all(queue=outbox.mail_queue())
    except RedisError as error:
        print(f"unhealthy: Redis did not answer ({type(error).__name__})", file=sys.stderr)
        return 1
    host = socket.gethostname()
    ages = [
        now() - worker.last_heartbeat
        for worker in workers
        if worker.hostname == host and worker.last_heartbeat is not None
    ]
    fresh = [age for age in ages if age <= limit]
    if fresh:
        alive = f"{len(fresh)} workers" if len(fresh) > 1 else "a worker"
        print(f"healthy: {alive} on {host}, last heartbeat {min(fresh).total_seconds():.0f} s ago")
        return 0
    newest = f"; the newest heartbeat is {min(ages).total_seconds():.0f} s old" if ages else ""
    print(f"unhealthy: no worker on {host} heartbeated in {_ttl(app)} s{newest}", file=sys.stderr)
    return 1


def _ttl(app: Flask) -> int:
    return app.config["MAIL_SWEEP_SECONDS"] + TTL_MARGIN_SECONDS


def _work(app: Flask, burst: bool, threads: connections.Connections) -> int:
    connection = get_redis(app)
    if burst:
        sweep(force=True)  # whatever is due now, lost jobs included, then drain it
    while True:
        worker = MailWorker(
            [outbox.mail_queue()],
            connection=connection,
            serializer=outbox.JOB_SERIALIZER,
            maintenance_interval=app.config["MAIL_SWEEP_SECONDS"],
            worker_ttl=_ttl(app),
        )
        worker.work(burst=burst, with_scheduler=True)
        if delivery_job.stop_requested.is_set():
            return 0
        if burst:
            # The threads may queue more (a full batch asks for another connection, a job
            # out of time for a fresh one): taken as a long-running worker would take them,
            # while the threads still run; drained only when they are done and the queue is
            # empty.
            while not threads.wait_idle(BURST_QUEUE_CHECK_SECONDS):
                if outbox.mail_queue().count:
                    break
            if not outbox.mail_queue().count:
                return 0
            continue
        # RQ's loop ends on any error it meets outside a job (a Redis call in its own
        # bookkeeping, mostly): a fresh worker takes over once Redis answers again.
        log.warning("the worker loop ended without a stop request; starting it again")
        time.sleep(1)  # never a tight loop, whatever ended it
        _wait_for(connection)


def _wait_for(connection: Redis) -> None:
    delay = 0.5
    while True:
        try:
            connection.ping()
            return
        except RedisError as error:
            log.warning("waiting for Redis: %s", error)
            time.sleep(delay)
            delay = min(delay * 2, MailWorker.max_connection_wait_time)
