"""The admin's optional threshold for flagging sends."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField
from wtforms.validators import NumberRange, Optional


class ThresholdForm(FlaskForm):
    threshold = IntegerField(
        "Flag any send with more recipients than",
        validators=[
            Optional(),
            NumberRange(min=1, max=1_000_000, message="Enter a whole number from 1 to 1,000,000."),
        ],
        description="Leave it blank to flag only sends larger than what the account can send now.",
    )
