"""The demo's sample data: a member who already holds points in lots that expire at different
times, every one of them booked by the programme's own functions at the moment it happened,
so /history, /redemptions, /balance and /settings tell one story."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Final

from bot.programme.birthdays import gift_allowed, give_birthday_gift, save_birthday
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.mall import confirm_redemption, offer_redemption
from bot.programme.purchases import record_purchase
from storage.members import Member, Profile

DEMO_USER_ID = 100000099
DEMO_FIRST_NAME = "小绿"
DEMO_LANGUAGE = "zh-hans"
DEMO_ACTOR = "demo-seed"

# (days ago, amount in yuan, category, receipt): old purchases expire soon, recent ones late;
# the redemption uses the oldest points first, and part of the second lot is still left.
DEMO_PURCHASES: tuple[tuple[int, str, str, str], ...] = (
    (350, "128.00", "general", "DEMO-0001"),
    (330, "299.00", "general", "DEMO-0002"),
    (300, "66.50", "eco", "DEMO-0003"),
    (120, "45.00", "refill", "DEMO-0004"),
    (10, "199.00", "eco", "DEMO-0005"),
)
# The member told us their birthday this long ago, and it was this many days ago: the gift
# was earned (entered well before the date) and shows in the statement on that day. It came
# after the redemption, so the member still holds these dated bonus points beside the
# purchase points that never expire, and /balance shows an expiry schedule.
BIRTHDAY_ENTERED_DAYS_AGO: Final = 300
BIRTHDAY_DAYS_AGO: Final = 3
# A canvas bag redeemed in the mall a few days ago: not collected yet, still returnable.
DEMO_REDEMPTION: Final = ("BAG-01", 5)


def as_of(programme: Programme, moment: datetime) -> Programme:
    """The same programme and stores with the clock at `moment`, for a step the seed replays."""
    then = copy.copy(programme)
    then.clock = lambda: moment
    return then


async def _purchase(programme: Programme, member: Member, entry: tuple[int, str, str, str]) -> None:
    """A purchase at the till on the day it was made (the CSV import builds the same one)."""
    days_ago, amount, category, receipt = entry
    bought = programme.now() - timedelta(days=days_ago)
    await record_purchase(
        programme,
        member.member_code,
        amount,
        category,
        receipt,
        purchased_at=bought,
        actor=DEMO_ACTOR,
        now=bought,
        tell_member=False,  # history, not news: no receipt pushed at the demo's start
    )


async def _birthday(programme: Programme, member: Member) -> None:
    """The birthday typed into /settings long ago, and the gift the birthday job gave."""
    config, now = programme.config, programme.now()
    celebrated = local_today(now - timedelta(days=BIRTHDAY_DAYS_AGO), config)
    entered = now - timedelta(days=BIRTHDAY_ENTERED_DAYS_AGO)
    saved = await save_birthday(
        as_of(programme, entered), DEMO_USER_ID, f"{celebrated.month}-{celebrated.day}"
    )
    preferences = await programme.pushes.preferences(DEMO_USER_ID)
    if not saved.gift or not gift_allowed(preferences.birthday_entered_at, celebrated, config):
        return
    # When the daily job runs on that day.
    job_ran = datetime.combine(celebrated, config.push.daily_at, tzinfo=config.program.tz)
    await give_birthday_gift(programme.ledger, config, member.id, celebrated, job_ran)


async def _redemption(programme: Programme, member: Member) -> None:
    """A mall redemption, offered and confirmed as the member's two taps would."""
    if (await programme.mall.redemptions(member.id, limit=1))[1]:
        return  # seeded before: an offer is new each time, so look instead of replaying
    sku, days_ago = DEMO_REDEMPTION
    then = as_of(programme, programme.now() - timedelta(days=days_ago))
    pending = await offer_redemption(then, member.id, sku)
    await confirm_redemption(then, member.id, pending.offer.id, actor=DEMO_ACTOR)


async def seed_demo(programme: Programme, now: datetime) -> int:
    """Register the demo member with purchases, a birthday and its gift, and a redemption, in
    the order they happened; return their member id (running it twice adds nothing)."""
    programme = as_of(programme, now)
    member, _ = await programme.members.register(
        Profile(DEMO_USER_ID, DEMO_FIRST_NAME, language_code=DEMO_LANGUAGE),
        now=now - timedelta(days=400),
    )
    # The statement lists operations in the order they were booked: book them as they happened,
    # oldest first.
    events: list[tuple[int, Callable[[], Awaitable[None]]]] = [
        (entry[0], partial(_purchase, programme, member, entry)) for entry in DEMO_PURCHASES
    ]
    events.append((BIRTHDAY_DAYS_AGO, partial(_birthday, programme, member)))
    events.append((DEMO_REDEMPTION[1], partial(_redemption, programme, member)))
    for _days_ago, happen in sorted(events, key=lambda event: -event[0]):
        await happen()
    return member.id
