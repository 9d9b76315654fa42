"""Admin: the morning page. Limit usage per account, the queue, 14 days of history."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app, render_template, request, url_for

from lamplight_mail.models import utcnow
from lamplight_mail.reporting import usage
from lamplight_mail.web import charts
from lamplight_mail.web.access import admin_required

bp = Blueprint("dashboard", __name__)

REFRESH_SECONDS = 30
SORTS = {"name": "by name", "usage": "by usage"}


@bp.get("/dashboard")
@admin_required
def index() -> str:
    sort = request.args.get("sort", "name")
    if sort not in SORTS:
        sort = "name"
    now = utcnow()
    figures = usage.account_figures(now, with_history=True, by_usage=sort == "usage")
    day_charts = {
        figure.account.id: charts.daily_bars(
            [day.day for day in figure.history],
            [day.sent for day in figure.history],
            figure.daily_limit,
        )
        for figure in figures
    }
    return render_template(
        "dashboard/index.html",
        figures=figures,
        charts=day_charts,
        queue=usage.queue_status(now),
        now=now,
        sort=sort,
        sorts=SORTS,
        refresh_seconds=REFRESH_SECONDS,
        window=_span_label(current_app.config["DAILY_WINDOW_SECONDS"]),
        minute=_span_label(current_app.config["MINUTE_WINDOW_SECONDS"]),
        links=_links("accounts.communication_settings", "admin_sends.flagged", "log.index"),
    )


def _links(*endpoints: str) -> dict[str, str]:
    """URLs of the pages the cards point to, for those areas that are installed."""
    return {
        endpoint: url_for(endpoint)
        for endpoint in endpoints
        if endpoint in current_app.view_functions
    }


def _span_label(seconds: int) -> str:
    """The rolling windows by their usual names: '24 h', '60 s' (tests shorten them)."""
    return f"{seconds // 3600} h" if seconds >= 3600 and seconds % 3600 == 0 else f"{seconds} s"


@bp.app_template_filter("duration")
def format_duration(value: timedelta | None) -> str:
    """A span as people say it: '45 s', '12 min', '3 h 5 min', '2 days 4 h'."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"
