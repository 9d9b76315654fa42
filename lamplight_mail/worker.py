"""Runs an RQ worker (with its scheduler) on the mail queue, inside an app context."""

from __future__ import annotations

import argparse

from rq import Queue, Worker

from lamplight_mail import create_app
from lamplight_mail.extensions import get_redis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send queued Lamplight mail.")
    parser.add_argument("--burst", action="store_true", help="drain what is due, then exit")
    args = parser.parse_args(argv)

    app = create_app()
    with app.app_context():
        connection = get_redis(app)
        queue = Queue(app.config["MAIL_QUEUE_NAME"], connection=connection)
        worker = Worker([queue], connection=connection)
        worker.work(burst=args.burst, with_scheduler=True)
    return 0
