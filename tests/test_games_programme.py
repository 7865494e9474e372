"""The games' programme functions on a pinned clock: free plays, prices and the day's limit,
the local day turning at the programme's midnight, and a campaign from its first local day."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from bot.clock import FixedClock
from bot.config import Config, StorageConfig, load_config
from bot.programme import games
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from storage.games import Games
from storage.ledger import Ledger
from storage.members import Members, Profile
from storage.store import Store
from storage.tiers import Tiers
from tests.conftest import NOW, SAMPLE
from tests.games_support import BAG, P10, P100, THANKS, ForcedDraws, with_wheel

# The test campaign's first local day: set here, never read off the real date.
FESTIVAL_STARTS = date(2027, 1, 1)
FESTIVAL = {
    "id": "new_year",
    "name": {"zh-CN": "新年双倍", "en": "New Year double"},
    "starts": FESTIVAL_STARTS,
    "ends": FESTIVAL_STARTS + timedelta(days=2),
    "multiplier": "2",
}


def local(config: Config, day: date, hour: int, minute: int) -> datetime:
    """An instant given by the programme's wall clock (Asia/Shanghai in the sample), in UTC
    as the system clock gives it."""
    return datetime.combine(day, time(hour, minute), tzinfo=config.program.tz).astimezone(UTC)


@pytest.fixture
async def programme(tmp_path: Path) -> AsyncIterator[Programme]:
    """The sample programme with the test wheel (one free spin, then 50 points, at most 3 a
    day) and the New Year campaign, on a clock pinned at tests.conftest.NOW."""
    config = with_wheel(daily_limit=3, campaigns=[FESTIVAL])(load_config(SAMPLE))
    config = config.model_copy(
        update={"storage": StorageConfig(path=str(tmp_path / "bot.sqlite3"), synchronous="NORMAL")}
    )
    clock = FixedClock(NOW)
    async with Store(config.storage.path, synchronous="NORMAL", clock=clock) as store:
        # Only what the games read: the member, their points and the plays.
        found = Programme()
        found.config, found.clock, found.store = config, clock, store
        found.members, found.ledger, found.games = Members(store), Ledger(store), Games(store)
        found.tiers = Tiers(store)  # the member's tier adds free spins
        found.game_random = ForcedDraws()
        yield found


async def member_holding(programme: Programme, points: int) -> int:
    """A new member with `points` that never expire; their id."""
    member, _ = await programme.members.register(Profile(8801, "Mei"))
    await programme.ledger.earn(
        member.id, points, kind="purchase", key="seed", actor="test", expires_at=None
    )
    return member.id


def wheel_disclosure(config: Config, at: datetime) -> games.Disclosure:
    """The wheel's odds as /odds shows them at `at`."""
    return next(d for d in games.disclosures(config, at) if d.table.game == "wheel")


def pin(programme: Programme, at: datetime) -> None:
    assert isinstance(programme.clock, FixedClock)
    programme.clock.set(at)


async def spin_next(programme: Programme, member_id: int, ticket: int) -> games.PlayResult:
    """Take the offered next spin, landing on `ticket`."""
    coming = await games.next_play(programme, member_id, "wheel")
    assert coming.offer_id is not None, coming
    programme.game_random = ForcedDraws(ticket)
    return await games.spin(programme, coming.offer_id, member_id, "test")


async def test_free_plays_then_the_price_then_the_days_limit(programme: Programme) -> None:
    member_id = await member_holding(programme, 120)
    first = await games.next_play(programme, member_id, "wheel")
    assert (first.played, first.limit, first.free_left, first.cost) == (0, 3, 1, 0)
    assert (first.price, first.available, first.refused) == (50, 120, None)
    assert first.offer_id is not None

    free = await spin_next(programme, member_id, THANKS)
    assert (free.play.cost, free.available) == (0, 120)
    # The spin offers the next one at once: paid now that the free spin is used.
    assert free.next_play is not None
    assert (free.next_play.played, free.next_play.free_left, free.next_play.cost) == (1, 0, 50)

    paid = await spin_next(programme, member_id, THANKS)
    assert (paid.play.cost, paid.available) == (50, 70)
    paid = await spin_next(programme, member_id, THANKS)
    assert paid.available == 20
    assert paid.next_play is not None
    assert (paid.next_play.played, paid.next_play.refused, paid.next_play.offer_id) == (
        3,
        "limit",
        None,
    )


async def test_too_few_points_for_a_paid_play_makes_no_offer(programme: Programme) -> None:
    member_id = await member_holding(programme, 30)
    await spin_next(programme, member_id, THANKS)
    coming = await games.next_play(programme, member_id, "wheel")
    assert (coming.cost, coming.available, coming.refused, coming.offer_id) == (
        50,
        30,
        "points",
        None,
    )


async def test_the_day_turns_at_the_programmes_midnight(programme: Programme) -> None:
    config = programme.config
    eve = FESTIVAL_STARTS - timedelta(days=1)
    pin(programme, local(config, eve, 23, 30))
    member_id = await member_holding(programme, 500)
    for _ in range(3):
        await spin_next(programme, member_id, THANKS)
    assert (await games.next_play(programme, member_id, "wheel")).refused == "limit"
    # An hour later in Shanghai it is a new day (still the same day in UTC): free again.
    pin(programme, local(config, FESTIVAL_STARTS, 0, 30))
    coming = await games.next_play(programme, member_id, "wheel")
    assert (coming.played, coming.free_left, coming.cost, coming.refused) == (0, 1, 0, None)


async def test_the_campaign_starts_on_its_first_local_day(programme: Programme) -> None:
    config = programme.config
    eve_late = local(config, FESTIVAL_STARTS - timedelta(days=1), 23, 30)
    first_day = local(config, FESTIVAL_STARTS, 0, 30)
    member_id = await member_holding(programme, 500)

    pin(programme, eve_late)
    before = wheel_disclosure(config, eve_late)
    assert before.campaign is None and before.expected == Fraction(55, 2)  # (100 + 10) / 4
    plain = await spin_next(programme, member_id, P100)
    assert (plain.play.local_day, plain.play.prize_points, plain.campaign) == (
        FESTIVAL_STARTS - timedelta(days=1),
        100,
        None,
    )

    pin(programme, first_day)
    during = wheel_disclosure(config, first_day)
    assert during.campaign is not None and during.campaign.id == "new_year"
    assert during.expected == 55
    assert [o.points for o in during.odds] == [200, 20, 0, 0]
    doubled = await spin_next(programme, member_id, P100)
    assert (doubled.play.local_day, doubled.play.prize_points) == (FESTIVAL_STARTS, 200)
    assert doubled.campaign is not None and doubled.campaign.id == "new_year"
    # The disclosure and the draw read one table: what was shown is what was paid.
    assert during.odds[0].points == doubled.play.prize_points
    ten = await spin_next(programme, member_id, P10)
    assert ten.play.prize_points == during.odds[1].points == 20


async def test_a_switched_off_game_refuses_its_offer(programme: Programme) -> None:
    member_id = await member_holding(programme, 100)
    coming = await games.next_play(programme, member_id, "wheel")
    assert coming.offer_id is not None
    wheel = programme.config.wheel
    assert wheel is not None
    programme.config = programme.config.model_copy(
        update={"wheel": wheel.model_copy(update={"enabled": False})}
    )
    with pytest.raises(RuleError) as refused:
        await games.spin(programme, coming.offer_id, member_id, "test")
    assert refused.value.key == "games.closed"
    closed = await games.next_play(programme, member_id, "wheel")
    assert (closed.refused, closed.offer_id, closed.available) == ("closed", None, 100)


async def test_a_voucher_lasts_through_its_last_local_day_and_is_accepted_once(
    programme: Programme,
) -> None:
    config = programme.config
    assert config.wheel is not None
    won_on = FESTIVAL_STARTS - timedelta(days=1)
    pin(programme, local(config, won_on, 23, 30))
    member_id = await member_holding(programme, 10)
    bag = await spin_next(programme, member_id, BAG)
    voucher = bag.play.voucher
    assert voucher is not None
    last_day = won_on + timedelta(days=config.wheel.voucher_days)
    assert voucher.expires_at == local(config, last_day + timedelta(days=1), 0, 0)

    pin(programme, local(config, last_day, 23, 59))
    [held], total = await games.member_vouchers(programme, member_id, limit=5)
    assert (held.status, total) == ("issued", 1)
    pin(programme, local(config, last_day + timedelta(days=1), 0, 0))
    [held], _ = await games.member_vouchers(programme, member_id, limit=5)
    assert held.status == "expired"
    refused = await games.fulfil_voucher(programme, voucher.code, "till")
    assert (refused.refused, refused.voucher.status) == ("expired", "issued")

    # The refusal changed nothing: on its last day (the clock set back) it is accepted, once.
    pin(programme, local(config, last_day, 12, 0))
    accepted = await games.fulfil_voucher(programme, voucher.code.lower(), "till")
    assert (accepted.refused, accepted.voucher.status, accepted.voucher.used_by) == (
        None,
        "used",
        "till",
    )
    again = await games.fulfil_voucher(programme, voucher.code, "till")
    assert (again.refused, again.voucher.used_at) == ("used", accepted.voucher.used_at)
