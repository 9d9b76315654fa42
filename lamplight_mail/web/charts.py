"""Geometry for small server-drawn SVG charts: templates draw, this module only measures.

No chart library and no JavaScript: the dashboard must read the same with scripts off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

# Drawing units (the SVG scales to its box): room at the top for the limit's label.
WIDTH = 280
HEIGHT = 120
TOP_MARGIN = 14
GAP = 2


@dataclass(frozen=True)
class Bar:
    day: date
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BarChart:
    bars: tuple[Bar, ...]
    scale_max: int  # the value drawn at the top of the plot
    limit: int | None
    limit_y: float | None
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def peak(self) -> Bar | None:
        return max(self.bars, key=lambda bar: bar.value, default=None)


def daily_bars(days: Sequence[date], counts: Sequence[int], limit: int | None) -> BarChart:
    """One bar per day, scaled so the limit line and the highest bar both fit."""
    scale_max = max([*counts, limit or 0, 1])
    plot_height = HEIGHT - TOP_MARGIN
    slot = WIDTH / max(len(days), 1)

    def y_of(value: int) -> float:
        return round(HEIGHT - plot_height * value / scale_max, 2)

    bars = tuple(
        Bar(
            day=day,
            value=value,
            x=round(index * slot + GAP / 2, 2),
            y=y_of(value),
            width=round(slot - GAP, 2),
            height=round(HEIGHT - y_of(value), 2),
        )
        for index, (day, value) in enumerate(zip(days, counts, strict=True))
    )
    return BarChart(bars, scale_max, limit, y_of(limit) if limit else None)
