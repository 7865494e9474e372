"""Announced expiry-policy changes: the notice rule, and the configuration they complete."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta

from bot.config import Config, ScheduledPolicy
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.errors import RuleError
from storage.pushes import PolicyChange, announce_policy_change, policy_changes
from storage.sql import atomic

NOTICE_KEYS = {
    "rolling": N_("push.policy_change.rolling"),
    "year_end": N_("push.policy_change.year_end"),
    "never": N_("push.policy_change.never"),
}


def scheduled(changes: list[PolicyChange]) -> tuple[ScheduledPolicy, ...]:
    """The stored changes as configuration."""
    return tuple(
        ScheduledPolicy(mode=c.mode, months=c.months, years=c.years, effective_on=c.effective_on)  # type: ignore[arg-type]
        for c in changes
    )


def with_announced(config: Config, changes: list[PolicyChange]) -> Config:
    """The configuration with every announced change, as the rules must apply it."""
    return config.model_copy(update={"expiry": config.expiry.with_scheduled(scheduled(changes))})


def load_announced(conn: sqlite3.Connection, config: Config) -> Config:
    """The configuration completed from the database (for the CLI's own connection)."""
    return with_announced(config, policy_changes(conn))


def earliest_effective(now: datetime, config: Config) -> date:
    """The first local day a change announced now may take effect."""
    return local_today(now, config) + timedelta(days=config.expiry.policy_notice_days)


def schedule_change(
    conn: sqlite3.Connection,
    config: Config,
    *,
    effective_on: date,
    mode: str,
    months: int,
    years: int,
    actor: str,
    now: datetime,
) -> tuple[PolicyChange, int]:
    """Announce a change at least the notice period ahead, and notify every member; raises
    RuleError (too soon) or storage's InvalidRequest (a change that day exists)."""
    first = earliest_effective(now, config)
    if effective_on < first:
        raise RuleError(
            N_("error.policy_too_soon"),
            day=effective_on.isoformat(),
            first=first.isoformat(),
            days=config.expiry.policy_notice_days,
        )
    # Validates the policy itself (months and years in range) before anything is written.
    ScheduledPolicy(mode=mode, months=months, years=years, effective_on=effective_on)  # type: ignore[arg-type]
    # The change and every member's notice, all or nothing.
    with atomic(conn):
        return announce_policy_change(
            conn,
            effective_on=effective_on,
            mode=mode,
            months=months,
            years=years,
            actor=actor,
            now=now,
            message_key=NOTICE_KEYS[mode],
        )
