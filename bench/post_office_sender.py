"""`python -m bench.post_office_sender PORT COUNT FOLDER`: django-post_office sending COUNT
queued emails to the bench's sink on PORT, for bench.one_account's (p) figure.

Django is configured in code: a SQLite database in FOLDER, post_office installed, Django's SMTP
backend with STARTTLS and AUTH (the sink's test CA trusted through SSL_CERT_FILE, which the
bench sets). The emails are queued with `mail.send_many` (priority medium, queued), then one
`send_queued()` call sends them: one process, post_office's default five threads, each thread
with its own SMTP connection kept for the whole run (BATCH_SIZE holds every email, so no
connection is opened twice). The sink times it from its first accept to its last, so Django's
start-up, the migration and the queueing are left out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings

from bench.throughput import BODY, SUBJECT
from tests.factories import SMTP_PASSWORD, SMTP_USER

THREADS = 5


def _configure(port: int, count: int, folder: Path) -> None:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(folder / "post_office.sqlite"),
            }
        },
        INSTALLED_APPS=["post_office"],
        # post_office renders every subject and body as a Django template.
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
        EMAIL_USE_TLS=True,
        EMAIL_HOST_USER=SMTP_USER,
        EMAIL_HOST_PASSWORD=SMTP_PASSWORD,
        EMAIL_TIMEOUT=20,
        DEFAULT_FROM_EMAIL=SMTP_USER,
        POST_OFFICE={"BATCH_SIZE": count, "THREADS_PER_PROCESS": THREADS},
        LOGGING_CONFIG=None,
    )
    django.setup()


def main(argv: list[str]) -> int:
    port, count, folder = int(argv[0]), int(argv[1]), Path(argv[2])
    _configure(port, count, folder)
    from django.core.management import call_command
    from post_office import mail

    call_command("migrate", verbosity=0)
    mail.send_many(
        [
            {
                "recipients": [f"person{i}@example.org"],
                "sender": SMTP_USER,
                "subject": SUBJECT,
                "message": BODY,
                "priority": "medium",
            }
            for i in range(count)
        ]
    )
    sent, failed, requeued = mail.send_queued(processes=1)
    if (sent, failed, requeued) != (count, 0, 0):
        print(f"post_office sent {sent}, failed {failed}, requeued {requeued}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
