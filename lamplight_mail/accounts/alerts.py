"""Telling the admins that an account paused or started failing: an email through a working
account, at most once an hour per account (the pages' banner says it every time).

health.py marks the account during the transaction; only once that commits is a job put on the
mail queue (a rolled-back pause tells nobody). The job runs in the worker and writes an ordinary
send to the admins, so the alert is delivered, limited, logged and counted like any mail."""

from __future__ import annotations

import logging

import redis
from flask import current_app
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from lamplight_mail import org_time
from lamplight_mail.extensions import db, get_redis
from lamplight_mail.models import AccountHealth, AccountKind, EmailAccount, Role, User

log = logging.getLogger(__name__)

ALERT_JOB = "lamplight_mail.accounts.alerts.email_admins"
# Present while an alert about the account was sent in the last hour.
ALERTED_KEY = "lamplight:alert:account:{account_id}"
ALERT_INTERVAL_SECONDS = 3600
_PENDING = "lamplight_alert_accounts"
SETTINGS_PATH = "/admin/communication-settings"


def after_commit(account_id: int) -> None:
    """Alert the admins about the account once the current transaction commits."""
    db.session().info.setdefault(_PENDING, set()).add(account_id)


# On the Session class, so every session (the web's and the worker's) alerts after its commits.
@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for account_id in sorted(session.info.pop(_PENDING, ())):
        _enqueue(account_id)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _enqueue(account_id: int) -> None:
    # The session may emit no SQL here (after commit): Redis only.
    from lamplight_mail.delivery.outbox import mail_queue

    try:
        connection = get_redis()
        key = ALERTED_KEY.format(account_id=account_id)
        if connection.set(key, 1, nx=True, ex=ALERT_INTERVAL_SECONDS):
            mail_queue().enqueue(ALERT_JOB, account_id, result_ttl=0, failure_ttl=7 * 24 * 3600)
    except redis.RedisError as error:
        # The banner on every admin page still says it.
        log.warning("could not queue the admins' alert about account %s: %s", account_id, error)


def working_account(excluding: int) -> EmailAccount | None:
    """A live account whose last test or delivery succeeded, other than the troubled one: the
    single account first, then admins' own accounts."""
    candidates = db.session.scalars(
        select(EmailAccount)
        .outerjoin(EmailAccount.owner)
        .where(
            EmailAccount.archived_at.is_(None),
            EmailAccount.id != excluding,
            EmailAccount.paused_at.is_(None),
            EmailAccount.last_outcome_ok.is_(True),
        )
        .order_by(
            (EmailAccount.kind != AccountKind.SYSTEM),
            (User.role != Role.ADMIN),
            EmailAccount.id,
        )
    )
    return next((a for a in candidates if a.health == AccountHealth.READY), None)


def alert_text(account: EmailAccount) -> tuple[str, str]:
    """The subject and body of the admins' email about the account."""
    paused = account.health == AccountHealth.PAUSED
    state = "paused" if paused else "failing"
    when = account.paused_at if paused else account.last_failure_at
    answer = account.paused_reason if paused else account.last_failure_answer
    advice = account.paused_advice if paused else account.last_failure_advice
    base = current_app.config.get("PUBLIC_URL") or ""
    since = f" (since {org_time.shown(when)})" if when else ""
    lines = [
        f"The email account {account.label} is {state}{since}.",
        "",
        "The server said:",
        f"    {answer}",
        "",
    ]
    if advice:
        lines += [f"What to do: {advice}", ""]
    if paused:
        lines += [
            "Its mail is held, not lost. A successful test by its owner or an admin, or Resume "
            "on Communication Settings, lets it go.",
            "",
        ]
    lines.append(f"Communication Settings: {base}{SETTINGS_PATH}")
    return f"Lamplight Mail: {account.label} is {state}", "\n".join(lines) + "\n"


def email_admins(account_id: int) -> None:
    """The RQ job: write one send to the active admins through a working account."""
    from lamplight_mail.delivery import outbox

    try:
        account = db.session.get(EmailAccount, account_id)
        if account is None or not account.needs_attention:
            return  # fixed since: nothing to say
        admins = db.session.scalars(
            select(User).where(User.role == Role.ADMIN, User.is_active_user).order_by(User.id)
        ).all()
        sender = working_account(excluding=account_id)
        if not admins or sender is None:
            log.warning("no working account to tell the admins about account %s", account_id)
            return
        subject, body = alert_text(account)
        who = sender.owner if sender.owner is not None else admins[0]
        db.session.commit()  # ends the read before the send's write transaction
        recipients = [_Recipient(admin.email, admin.name) for admin in admins]
        outbox.create_send(who, sender, recipients, subject, body)
    finally:
        db.session.remove()


class _Recipient:
    def __init__(self, email: str, name: str) -> None:
        self.email = email
        self.name = name
