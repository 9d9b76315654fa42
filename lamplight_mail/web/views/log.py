"""Admin: the delivery log, every message, filtered, keyset-paged, exported as CSV."""

from __future__ import annotations

from flask import Blueprint, render_template, request, stream_with_context
from werkzeug.wrappers import Response

from lamplight_mail.models import EmailAccount, utcnow
from lamplight_mail.reporting import delivery_log
from lamplight_mail.reporting.delivery_log import LogFilter
from lamplight_mail.web.access import admin_required
from lamplight_mail.web.forms.log import STATE_LABELS, LogFilterForm
from lamplight_mail.web.keyset import Cursor, KeysetPage

bp = Blueprint("log", __name__, url_prefix="/log")


@bp.get("")
@admin_required
def index() -> str:
    form, accounts = _filter_form()
    if not form.validate():
        return _render(form, accounts)
    log_filter = form.to_filter()
    page = delivery_log.log_page(
        log_filter,
        before=Cursor.parse(request.args.get("before")),
        after=Cursor.parse(request.args.get("after")),
    )
    return _render(form, accounts, log_filter, page)


@bp.get("/export.csv")
@admin_required
def export() -> Response | tuple[str, int]:
    form, accounts = _filter_form()
    if not form.validate():
        # The log again, with the errors next to the filters; nothing is exported.
        return _render(form, accounts), 400
    filename = f"lamplight-mail-log-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(delivery_log.csv_lines(form.to_filter())),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _filter_form() -> tuple[LogFilterForm, dict[int, EmailAccount]]:
    accounts = delivery_log.accounts()
    return LogFilterForm(accounts.values(), formdata=request.args), accounts


def _render(
    form: LogFilterForm,
    accounts: dict[int, EmailAccount],
    log_filter: LogFilter | None = None,
    page: KeysetPage | None = None,
) -> str:
    return render_template(
        "log/index.html",
        form=form,
        page=page,
        filter_args=log_filter.as_args() if log_filter else {},
        accounts=accounts,
        state_labels=STATE_LABELS,
    )
