"""The programme's calendar: its 'today', the end of a local day, the last valid day shown."""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta

from bot.config import Config


def local_today(now: datetime, config: Config) -> date:
    """The programme's 'today' for an aware instant."""
    return now.astimezone(config.program.tz).date()


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def end_of_day(day: date, config: Config) -> datetime:
    """The instant a local day ends: the next local midnight (points are expired from then on)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=config.program.tz)


def display_expiry(expiry: datetime, config: Config) -> date:
    """The last valid local day for a stored expiry instant (what members are shown)."""
    return (expiry.astimezone(config.program.tz) - timedelta(microseconds=1)).date()
