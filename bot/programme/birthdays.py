"""Birthdays: what a member may enter, when it may change, and which birthday earns a gift.

A birthday is set once and changed at most once a year; one entered or changed fewer than
`min_days_before` days before the date earns no gift that year, so nobody sets "today" to
collect one. 29 February is celebrated on the configured day of a common year.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from bot.config import Config, Tier
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.tier_benefits import birthday_gift_points, birthday_gifts_on
from bot.programme.tiers import held_tier, member_tier, tiers_on
from storage import ledger
from storage.errors import InvalidRequest
from storage.ledger import OperationResult
from storage.pushes import SERVICE, Booked, Push, Pushes

# A birthday once changed may change again only after this long.
CHANGE_INTERVAL: Final = timedelta(days=365)
# Nobody is older than this.
MAX_AGE_YEARS: Final = 120
# 03-15, 3/15, 1990-03-15, 1990/3/15, 3月15日, 1990年3月15日
BIRTHDAY: Final = re.compile(
    r"^\s*(?:(?P<year>\d{4})\s*[-/.年]\s*)?(?P<month>\d{1,2})\s*[-/.月]\s*(?P<day>\d{1,2})\s*日?\s*$"
)


class NotABirthday(RuleError):
    """What the member typed is no birthday: they may type it again."""


def parse_birthday(text: str, today: date) -> tuple[int, int, int | None] | None:
    """(month, day, year or None) from what the member typed, or None when it is no date."""
    match = BIRTHDAY.match(text)
    if match is None:
        return None
    month, day = int(match["month"]), int(match["day"])
    year = int(match["year"]) if match["year"] else None
    try:
        date(year or 2000, month, day)  # 2000 is a leap year: 29 February is a real birthday
    except ValueError:
        return None
    if year is not None and not today.year - MAX_AGE_YEARS <= year <= today.year:
        return None
    if year is not None and date(year, month, day) > today:
        return None
    return month, day, year


def birthday_dates(day: date, config: Config) -> list[tuple[int, int]]:
    """The (month, day) birthdays celebrated on local `day` (29 Feb by the configured policy)."""
    dates = [(day.month, day.day)]
    leap = day.year % 4 == 0 and (day.year % 100 != 0 or day.year % 400 == 0)
    if not leap:
        policy = config.birthday.feb29_in_common_years
        if (policy == "feb28" and (day.month, day.day) == (2, 28)) or (
            policy == "mar1" and (day.month, day.day) == (3, 1)
        ):
            dates.append((2, 29))
    return dates


def celebration_day(month: int, day: int, year: int, config: Config) -> date:
    """The local day a birthday is celebrated in `year`."""
    try:
        return date(year, month, day)
    except ValueError:  # 29 February in a common year
        return (
            date(year, 2, 28)
            if config.birthday.feb29_in_common_years == "feb28"
            else date(year, 3, 1)
        )


def next_celebration(month: int, day: int, today: date, config: Config) -> date:
    """The next local day (today included) this birthday is celebrated."""
    this_year = celebration_day(month, day, today.year, config)
    return this_year if this_year >= today else celebration_day(month, day, today.year + 1, config)


def gift_allowed(entered_at: datetime | None, celebrated: date, config: Config) -> bool:
    """False when the birthday was entered within `min_days_before` days before the date."""
    if entered_at is None:
        return True
    entered = local_today(entered_at, config)
    window_start = celebrated - timedelta(days=config.birthday.min_days_before)
    return not window_start < entered <= celebrated


def birthday_gift_key(member_id: int, celebrated: date) -> str:
    """The idempotency key of a member's gift for the birthday celebrated on `celebrated`."""
    return f"birthday:{member_id}:{celebrated.year}"


class NoBirthdayGift(Exception):
    """The member's tier and the programme both give no birthday gift (nothing was booked)."""


def birthday_greeting(
    member_id: int, celebrated: date, points: int, tier: Tier | None, config: Config
) -> Push:
    """The birthday greeting with the gift, naming the tier when the tier raised it."""
    key = birthday_gift_key(member_id, celebrated)
    standard = config.birthday.gift_points
    if tier is None or points <= standard:
        return Push(key, member_id, SERVICE, N_("push.birthday_gift"), {"points": points})
    names = {"zh-CN": tier.name.zh_CN, "en": tier.name.en}
    return Push(
        key,
        member_id,
        SERVICE,
        N_("benefits.birthday_gift_tier"),
        {"points": points, "emoji": tier.emoji, "tier": names, "more": points - standard},
    )


async def give_birthday_gift(
    pushes: Pushes,
    config: Config,
    member_id: int,
    celebrated: date,
    now: datetime,
    *,
    greet: bool = True,
) -> OperationResult:
    """Credit the member's birthday gift for the birthday celebrated on local `celebrated`:
    their tier's, read in the booking transaction, else the programme's; with its greeting
    when `greet` (once a year: a replay changes nothing); raises NoBirthdayGift, Conflict,
    NotFound, InvalidRequest."""
    # The birthday job and the demo seed both book it here, so a seeded gift is a real one.
    held: list[tuple[int, Tier | None]] = []

    def book(conn: sqlite3.Connection) -> OperationResult:
        key = birthday_gift_key(member_id, celebrated)
        if (first := ledger.applied(conn, key)) is not None:
            # Booked before (a re-run, the seed again): that gift stands, even if the
            # member's tier (and so the gift) moved since; nothing to greet again.
            held.append((first.points, None))
            return first
        tier = held_tier(conn, member_id, config) if tiers_on(config) else None
        points = birthday_gift_points(tier, config)
        if not points:
            raise NoBirthdayGift(member_id)
        held.append((points, tier))
        return ledger.earn(
            conn,
            member_id,
            points,
            kind="birthday",
            key=key,
            actor="system:birthday",
            expires_at=expires_at(now, config, "birthday"),
            reason=str(celebrated.year),
            now=now,
        )

    def notice(booked: Booked) -> Push | None:
        points, tier = held[-1]
        return birthday_greeting(member_id, celebrated, points, tier, config) if greet else None

    return await pushes.book_and_notify(book, notice, now)


@dataclass(frozen=True, slots=True)
class BirthdayTerms:
    """The birthday gift as /rules states it."""

    gift_points: int
    min_days_before: int


def birthday_terms(config: Config) -> BirthdayTerms | None:
    """The birthday gift's terms, or None when the programme gives none (in no tier)."""
    gift = config.birthday.gift_points
    return (
        BirthdayTerms(gift, config.birthday.min_days_before) if birthday_gifts_on(config) else None
    )


@dataclass(frozen=True, slots=True)
class SavedBirthday:
    """A birthday as recorded, and what it means for the next gift."""

    month: int
    day: int
    year: int | None
    next_celebration: date
    # The programme's gift (None: it gives none), and whether the next celebration brings it
    # (not when the birthday was entered too shortly before).
    gift: BirthdayTerms | None
    gift_on_next: bool


async def save_birthday(programme: Programme, telegram_id: int, text: str) -> SavedBirthday:
    """Record the birthday the member typed; raises NotABirthday, RuleError (a change within
    a year of the last one) and NotFound."""
    config = programme.config
    now = programme.now()
    today = local_today(now, config)
    parsed = parse_birthday(text, today)
    if parsed is None:
        raise NotABirthday(N_("settings.birthday_invalid"), value=text[:32])
    month, day, year = parsed
    try:
        saved = await programme.pushes.set_birthday(
            telegram_id, month, day, year, now=now, change_allowed_after=now - CHANGE_INTERVAL
        )
    except InvalidRequest:
        raise RuleError(N_("settings.birthday_change_too_soon")) from None
    upcoming = next_celebration(month, day, today, config)
    # The birthday job's own rule, on the entry date the store kept (the same birthday typed
    # again keeps its first entry).
    allowed = gift_allowed(saved.birthday_entered_at, upcoming, config)
    # The gift this member's tier gives today (what the birthday job would book).
    points = birthday_gift_points(await member_tier(programme, saved.member_id), config)
    gift = BirthdayTerms(points, config.birthday.min_days_before) if points else None
    return SavedBirthday(month, day, year, upcoming, gift, allowed)


def dependant_gift_key(origin_id: int, celebrated: date) -> str:
    """The idempotency key (and greeting dedupe key) of a child's or pet's birthday celebrated
    on `celebrated`: by its first row, so removing and adding it again gives no second gift."""
    return f"birthday:dep:{origin_id}:{celebrated.year}"
