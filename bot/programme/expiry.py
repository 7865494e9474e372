"""When earned points expire, under the expiry policy in force on the day they were earned."""

from __future__ import annotations

from datetime import date, datetime

from bot.config import Config
from bot.programme.calendar import add_months, end_of_day, local_today


def last_valid_day(earned_at: datetime, config: Config) -> date | None:
    """The last local day on which points earned at `earned_at` can be used (None: never
    expire), under the policy in force on the day they were earned."""
    earned_on = local_today(earned_at, config)
    policy = config.expiry.policy_on(earned_on)
    if policy.mode == "never":
        return None
    if policy.mode == "year_end":
        return date(earned_on.year + policy.years, 12, 31)
    return add_months(earned_on, policy.months)


def expires_at(earned_at: datetime, config: Config) -> datetime | None:
    """When points earned at `earned_at` expire under the current policy (None: never)."""
    day = last_valid_day(earned_at, config)
    return None if day is None else end_of_day(day, config)
