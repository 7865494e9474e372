"""The demo's sample data: a member who already holds points in lots that expire at different
times, every one of them booked by the programme's own functions at the moment it happened,
so /history, /redemptions, /balance and /settings tell one story; one purchase away from the
next member tier; and their household (a second member who shares their balance, past the
cooling-off) and a pet, so a newcomer can try /transfer and /family at once."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from functools import partial
from typing import Final

from bot.config import Config
from bot.programme import family
from bot.programme.birthdays import gift_allowed, give_birthday_gift, save_birthday
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.dependants import add_dependant, name_dependant, start_adding
from bot.programme.mall import confirm_redemption, offer_redemption
from bot.programme.purchases import find_category, points_per_yuan, purchase_points, record_purchase
from bot.programme.tiers import month_of, qualification_months, tiers_on
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
# The demo member is one purchase away from the next tier: this window's purchases come to
# this much short of the threshold of the tier above the second ("再消费 ¥100 升级为绿树"),
# made up by a large purchase (in receipts of at most [earn] max_purchase_yuan) the day
# before, or at the window's first moment when that is later (on 1 January: today).
DEMO_TIER_GAP: Final = 100
DEMO_TIER_PURCHASE: Final = ("general", "DEMO-1")
DEMO_TIER_DAYS_AGO: Final = 1
# The member told us their birthday this long ago, and it was this many days ago: the gift
# was earned (entered well before the date) and shows in the statement on that day. It came
# after the redemption, so the member still holds these dated bonus points beside the
# purchase points that never expire, and /balance shows an expiry schedule.
BIRTHDAY_ENTERED_DAYS_AGO: Final = 300
BIRTHDAY_DAYS_AGO: Final = 3
# A canvas bag redeemed in the mall a few days ago: not collected yet, still returnable.
DEMO_REDEMPTION: Final = ("BAG-01", 5)
# The demo member's household: they created it and their partner joined this many days ago
# (well past the cooling-off); the partner has purchases of their own and shares their balance.
DEMO_PARTNER_ID: Final = 100000098
DEMO_PARTNER_NAME: Final = "小蓝"
HOUSEHOLD_DAYS_AGO: Final = 40
DEMO_PARTNER_PURCHASES: tuple[tuple[int, str, str, str], ...] = (
    (90, "256.00", "general", "DEMO-0101"),
    (20, "88.00", "eco", "DEMO-0102"),
)
# Their pet, added long ago, with a birthday coming in a few days: its gift is on the way.
DEMO_PET: Final = ("豆豆", 200)
DEMO_PET_BIRTHDAY_IN_DAYS: Final = 12


def _window_start(config: Config, now: datetime) -> datetime:
    """The first moment whose purchases count towards a tier now."""
    first = qualification_months(local_today(now, config), config)[0]
    year, month = (int(part) for part in first.split("-"))
    return datetime(year, month, 1, tzinfo=config.program.tz)


def tier_purchases(config: Config, now: datetime) -> tuple[tuple[float, str, str, str], ...]:
    """The purchases that bring the demo member DEMO_TIER_GAP short of a tier (days ago, yuan,
    category, receipt), on top of DEMO_PURCHASES; none without tiers."""
    if not tiers_on(config) or len(config.tiers.levels) < 2:
        return ()
    levels = config.tiers.levels
    target = max(0, levels[min(2, len(levels) - 1)].threshold - DEMO_TIER_GAP)
    months = set(qualification_months(local_today(now, config), config))
    counted = [
        (Decimal(amount), category)
        for days_ago, amount, category, _receipt in DEMO_PURCHASES
        if month_of(local_today(now - timedelta(days=days_ago), config)) in months
    ]
    category_id, receipt = DEMO_TIER_PURCHASE
    category = find_category(category_id, config)
    if config.tiers.measure == "spend_yuan":
        needed = Decimal(target) - sum((amount for amount, _c in counted), Decimal(0))
    else:
        have = sum(purchase_points(a, find_category(c, config), config) for a, c in counted)
        # Whole yuan at the category's rate; a rate below 1 may overshoot by a point.
        needed = (Decimal(target - have) / points_per_yuan(category, config)).to_integral_value(
            ROUND_CEILING
        )
    bought = max(now - timedelta(days=DEMO_TIER_DAYS_AGO), _window_start(config, now))
    days_ago = (now - bought) / timedelta(days=1)
    cap = config.earn.max_purchase_yuan
    pieces: list[tuple[float, str, str, str]] = []
    while needed > 0:
        piece = min(needed, cap)
        pieces.append((days_ago, f"{piece:.2f}", category_id, f"{receipt}{len(pieces) + 1:03d}"))
        needed -= piece
    return tuple(pieces)


def as_of(programme: Programme, moment: datetime) -> Programme:
    """The same programme and stores with the clock at `moment`, for a step the seed replays."""
    then = copy.copy(programme)
    then.clock = lambda: moment
    return then


async def _purchase(
    programme: Programme, member: Member, entry: tuple[float, str, str, str]
) -> None:
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
    await give_birthday_gift(programme.pushes, config, member.id, celebrated, job_ran, greet=False)


async def _household(programme: Programme, member: Member, partner: Member) -> None:
    """The household the demo member created, the partner's accepted invitation, and the
    partner's choice to show their balance to it."""
    if await programme.families.household_of(member.id) is not None:
        return  # seeded before
    await family.create(programme, member.id, actor=DEMO_ACTOR)
    invitation = await family.invite(programme, member.id)
    # Accepted at once, as a tap on the link would; the inviter's "accepted" notice is news of
    # weeks ago, so none is queued (family.answer always queues one).
    await programme.families.answer_invitation(
        invitation.id,
        partner.id,
        accept=True,
        max_members=programme.config.family.max_members,
        actor=DEMO_ACTOR,
        notice=None,
        now=programme.now(),
    )
    await family.set_sharing(programme, partner.id, True)


async def _pet(programme: Programme, member: Member, now: datetime) -> None:
    """The pet added in /settings long ago, typed as a member types it."""
    if await programme.dependants.dependants_of(member.id):
        return  # seeded before
    name, days_ago = DEMO_PET
    then = as_of(programme, now - timedelta(days=days_ago))
    birthday = local_today(now, programme.config) + timedelta(days=DEMO_PET_BIRTHDAY_IN_DAYS)
    await start_adding(then, member.id, "pet")
    await name_dependant(then, member.id, name)
    await add_dependant(then, member.id, f"{birthday.month}-{birthday.day}")


async def _redemption(programme: Programme, member: Member) -> None:
    """A mall redemption, offered and confirmed as the member's two taps would."""
    if (await programme.mall.redemptions(member.id, limit=1))[1]:
        return  # seeded before: an offer is new each time, so look instead of replaying
    sku, days_ago = DEMO_REDEMPTION
    then = as_of(programme, programme.now() - timedelta(days=days_ago))
    pending = await offer_redemption(then, member.id, sku)
    await confirm_redemption(then, member.id, pending.offer.id, actor=DEMO_ACTOR)


async def seed_demo(programme: Programme, now: datetime) -> int:
    """Register the demo member with purchases, a birthday and its gift, a redemption, a
    household with a partner, and a pet, in the order they happened; return their member id
    (running it twice adds nothing)."""
    programme = as_of(programme, now)
    member, _ = await programme.members.register(
        Profile(DEMO_USER_ID, DEMO_FIRST_NAME, language_code=DEMO_LANGUAGE),
        now=now - timedelta(days=400),
    )
    # The statement lists operations in the order they were booked: book them as they happened,
    # oldest first.
    events: list[tuple[float, Callable[[], Awaitable[None]]]] = [
        (entry[0], partial(_purchase, programme, member, entry))
        for entry in (*DEMO_PURCHASES, *tier_purchases(programme.config, now))
    ]
    events.append((BIRTHDAY_DAYS_AGO, partial(_birthday, programme, member)))
    events.append((DEMO_REDEMPTION[1], partial(_redemption, programme, member)))
    partner, _ = await programme.members.register(
        Profile(DEMO_PARTNER_ID, DEMO_PARTNER_NAME, language_code=DEMO_LANGUAGE),
        now=now - timedelta(days=400),
    )
    events += [
        (entry[0], partial(_purchase, programme, partner, entry))
        for entry in DEMO_PARTNER_PURCHASES
    ]
    household_formed = as_of(programme, now - timedelta(days=HOUSEHOLD_DAYS_AGO))
    events.append((HOUSEHOLD_DAYS_AGO, partial(_household, household_formed, member, partner)))
    events.append((DEMO_PET[1], partial(_pet, programme, member, now)))
    for _days_ago, happen in sorted(events, key=lambda event: -event[0]):
        await happen()
    return member.id
