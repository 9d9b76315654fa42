"""The organisation's time zone (LAMPLIGHT_MAIL_TIMEZONE): times are stored as naive UTC and
shown, or typed in, as the organisation's clocks read them, British Summer Time included."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from flask import current_app

SEND_AT_FORMAT = "%Y-%m-%dT%H:%M"


def zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def zone_name() -> str:
    """The zone as pages name it, e.g. "UK time (Europe/London)"."""
    key = zone().key
    return "UK time (Europe/London)" if key == "Europe/London" else key


def local(moment: datetime) -> datetime:
    """A stored (naive UTC) moment on the organisation's clocks."""
    return moment.replace(tzinfo=UTC).astimezone(zone())


def day_of(moment: datetime) -> date:
    """The organisation's day at a stored (naive UTC) moment: 00:30 BST on 1 June is 1 June,
    though UTC still says 31 May."""
    return local(moment).date()


def day_start(day: date) -> datetime:
    """The stored (naive UTC) moment the organisation's `day` begins."""
    return datetime.combine(day, time(), tzinfo=zone()).astimezone(UTC).replace(tzinfo=None)


def shown(moment: datetime | None) -> str:
    """e.g. "14 Jul 2026 09:30 BST"."""
    return "" if moment is None else local(moment).strftime("%d %b %Y %H:%M %Z")


def parse_local(text: str) -> datetime:
    """`YYYY-MM-DDTHH:MM` on the organisation's clocks as naive UTC; ValueError saying why
    not (a form shows it)."""
    try:
        wall = datetime.strptime(text.strip(), SEND_AT_FORMAT)
    except ValueError:
        raise ValueError(
            "Give the date and time as YYYY-MM-DDTHH:MM, e.g. 2026-07-14T09:30."
        ) from None
    moment = wall.replace(tzinfo=zone())
    utc = moment.astimezone(UTC)
    # The hour skipped when the clocks go forward does not exist: say so rather than guess.
    if utc.astimezone(zone()).replace(tzinfo=None) != wall:
        raise ValueError(
            f"{wall:%H:%M} does not exist on {wall:%d %b %Y}: the clocks go forward. "
            "Choose another time."
        )
    return utc.replace(tzinfo=None)


def as_field(moment: datetime | None) -> str:
    """A stored moment as the send_at field shows it."""
    return "" if moment is None else local(moment).strftime(SEND_AT_FORMAT)
