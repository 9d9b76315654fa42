"""Admin: the audit trail, who changed what and when, newest first."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlalchemy import select

from lamplight_mail.models import AuditEvent
from lamplight_mail.web.access import admin_required
from lamplight_mail.web.keyset import Cursor, Keyset

bp = Blueprint("audit", __name__, url_prefix="/admin/audit")

PER_PAGE = 50
KEYSET = Keyset(
    AuditEvent.at, AuditEvent.id, lambda row: Cursor(row.AuditEvent.at, row.AuditEvent.id)
)


@bp.get("")
@admin_required
def index() -> str:
    page = KEYSET.page(
        select(AuditEvent),
        before=Cursor.parse(request.args.get("before")),
        after=Cursor.parse(request.args.get("after")),
        per_page=PER_PAGE,
    )
    return render_template("audit/index.html", page=page)
