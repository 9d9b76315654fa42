"""Development only: what the local SMTP catcher received."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, render_template

from lamplight_mail.dev.smtp_catcher import INBOX_FOLDER, DevInbox

bp = Blueprint("dev", __name__, url_prefix="/dev")


def _inbox() -> DevInbox:
    return DevInbox(Path(current_app.instance_path) / INBOX_FOLDER)


@bp.get("/inbox")
def inbox() -> str:
    inbox = _inbox()
    messages = [inbox.get(name) for name in inbox.names()[:200]]
    return render_template("dev/inbox.html", messages=[m for m in messages if m])


@bp.get("/inbox/<name>")
def message(name: str) -> str:
    caught = _inbox().get(name) or abort(404)
    return render_template("dev/message.html", caught=caught)
