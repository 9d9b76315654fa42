"""Filters of the delivery log: a GET form (bookmarkable, no CSRF token needed: it changes
nothing)."""

from __future__ import annotations

from collections.abc import Iterable

from flask_wtf import FlaskForm
from wtforms import DateField, SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional, ValidationError

from lamplight_mail import org_time
from lamplight_mail.models import EmailAccount, MessageStatus
from lamplight_mail.reporting.delivery_log import LogFilter

STATE_LABELS = {
    MessageStatus.PENDING: "Pending",
    MessageStatus.QUEUED: "Queued",
    MessageStatus.SENDING: "Sending",
    MessageStatus.SENT: "Sent",
    MessageStatus.FAILED: "Failed",
    MessageStatus.DEFERRED: "Deferred",
    MessageStatus.CANCELLED: "Cancelled",
}


def _account_choice(value: str | int | None) -> int | str | None:
    """An account id; None for any account; what the address gave when it is no number (the
    form then says the account is unknown, rather than WTForms's "could not coerce")."""
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        return str(value)


class LogFilterForm(FlaskForm):
    class Meta:
        csrf = False

    account = SelectField(
        "Account", coerce=_account_choice, validators=[Optional()], validate_choice=False
    )
    state = SelectField(
        "State",
        choices=[SelectChoice("", "Any state")]
        + [SelectChoice(state.value, label) for state, label in STATE_LABELS.items()],
        validators=[Optional()],
    )
    date_from = DateField("Created from", validators=[Optional()])
    date_to = DateField("Created until", validators=[Optional()])
    q = StringField(
        "Search",
        validators=[Optional(), Length(max=200)],
        description="Part of the recipient's address or name, or of the subject.",
    )

    def __init__(self, accounts: Iterable[EmailAccount], **kwargs) -> None:
        super().__init__(**kwargs)
        # A day as the log's times show it, which may not be UTC's (00:30 BST is the next day).
        self.date_from.description = self.date_to.description = f"Day, {org_time.zone_name()}."
        self.account.choices = [SelectChoice("", "Any account")] + [
            SelectChoice(account.id, account.label) for account in accounts
        ]

    def validate_account(self, field: SelectField) -> None:
        # An address edited by hand, or an account since removed from the list.
        known = {choice.value for choice in field.choices}
        if field.data is not None and field.data not in known:
            raise ValidationError("Unknown account: choose one from the list.")

    def validate_date_to(self, field: DateField) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("This day is before the 'Created from' day.")

    def to_filter(self) -> LogFilter:
        return LogFilter(
            account_id=self.account.data,
            state=MessageStatus(self.state.data) if self.state.data else None,
            date_from=self.date_from.data,
            date_to=self.date_to.data,
            search=(self.q.data or "").strip(),
        )
