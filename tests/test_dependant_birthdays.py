"""The daily job greets members on their children's and pets' birthdays, under a moved clock:
at the programme's midnight, once a year, 29 February by the policy, after a missed run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.config import Config
from bot.programme.dependants import (
    SavedDependant,
    add_dependant,
    name_dependant,
    remove_dependant,
    start_adding,
)
from storage.members import Member
from tests.conftest import NOW, Sandbox, assert_audit_ok, available, member_with

MIDNIGHT_MAR_15 = datetime(2027, 3, 14, 16, 0, 30, tzinfo=UTC)  # 00:00:30 in Shanghai


def texts(sandbox: Sandbox, user_id: int) -> list[str]:
    return [m.text or "" for m in sandbox.emu.messages(user_id) if m.from_bot]


async def deliver(sandbox: Sandbox) -> int:
    return await sandbox.services.sender.drain()


def at(sandbox: Sandbox, when: datetime) -> None:
    sandbox.services.clock = lambda: when


async def adding(
    sandbox: Sandbox, member: Member, kind: str, name: str, birthday: str
) -> SavedDependant:
    programme = sandbox.services
    await start_adding(programme, member.id, kind)
    await name_dependant(programme, member.id, name)
    return await add_dependant(programme, member.id, birthday)


async def daily(sandbox: Sandbox, when: datetime) -> tuple[int, int]:
    """Run the daily job at `when` (the clock moved there); (greetings, gifts)."""
    at(sandbox, when)
    report = await sandbox.services.scheduler.daily(when)
    return report.family_birthdays, report.family_gifts


async def test_a_child_is_greeted_at_midnight_with_the_points_once(sandbox: Sandbox) -> None:
    alice = await member_with(sandbox, 7101, 0)
    await adding(sandbox, alice, "child", "小宝", "2021-03-15")  # at NOW: months ahead
    assert await daily(sandbox, MIDNIGHT_MAR_15 - timedelta(minutes=2)) == (0, 0)
    assert await daily(sandbox, MIDNIGHT_MAR_15) == (1, 1)
    await deliver(sandbox)
    greeting = "🎂 祝「小宝」生日快乐！送您 66 积分生日礼，已存入账户。"
    assert greeting in texts(sandbox, 7101)
    assert await available(sandbox, alice) == 66
    # Run again that day (a restart): nothing booked, nothing sent twice.
    assert await daily(sandbox, MIDNIGHT_MAR_15 + timedelta(hours=9)) == (1, 0)
    await deliver(sandbox)
    assert texts(sandbox, 7101).count(greeting) == 1
    assert await available(sandbox, alice) == 66
    await assert_audit_ok(sandbox)


async def test_a_pet_gets_its_cake_voucher_in_english(sandbox: Sandbox) -> None:
    bob = await member_with(sandbox, 7102, 0, lang="en")
    await adding(sandbox, bob, "pet", "<b>Rex</b>", "03-15")
    assert await daily(sandbox, MIDNIGHT_MAR_15) == (1, 1)
    await deliver(sandbox)
    [code] = [r.code for r in (await sandbox.services.mall.redemptions(bob.id))[0]]
    assert (
        f"🐾 Happy birthday to <b>Rex</b>! Here is a Pet birthday cake voucher for you: code"
        f" {code} (see /redemptions)."
    ) in texts(sandbox, 7102)
    # A redemption like any other: listed, and the member's points untouched.
    chat = sandbox.member(7102, language_code="en")
    [listed] = await chat.send("/redemptions")
    assert "Pet birthday cake voucher" in (listed.text or "")
    assert await available(sandbox, bob) == 0
    # But a gift, not the member's points: no cancel button, and a forged one is refused.
    assert f"Cancel {code}" not in listed.buttons
    for action in ("ret", "rety"):
        await chat.tap_data(listed.message_id, f"red:{action}:{code}", expect=0)
        assert chat.last_callback_answer == (
            "It is “ready to use”, so it cannot be cancelled or returned. See /rules for what"
            " can be."
        )
    assert await available(sandbox, bob) == 0
    await assert_audit_ok(sandbox)


async def test_a_removed_dependant_is_not_greeted(sandbox: Sandbox) -> None:
    carol = await member_with(sandbox, 7103, 0)
    saved = await adding(sandbox, carol, "pet", "Mimi", "03-15")
    await remove_dependant(sandbox.services, carol.id, saved.view.dependant.id)
    assert await daily(sandbox, MIDNIGHT_MAR_15) == (0, 0)


def feb29_on(policy: str) -> Callable[[Config], Config]:
    def change(config: Config) -> Config:
        birthday = config.birthday.model_copy(update={"feb29_in_common_years": policy})
        return config.model_copy(update={"birthday": birthday})

    return change


def shanghai_morning(day: date) -> datetime:
    """10:00 in Shanghai on `day`."""
    return datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("configure", "common_year_day"),
    [([feb29_on("feb28")], date(2027, 2, 28)), ([feb29_on("mar1")], date(2027, 3, 1))],
)
async def test_a_pet_born_on_29_february(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]], common_year_day: date
) -> None:
    dave = await member_with(sandbox, 7104, 0)
    await adding(sandbox, dave, "pet", "闰闰", "2024-02-29")
    greeted: list[date] = []
    day = date(2027, 2, 26)
    # Every morning from late February 2027 to early March 2028, the job twice a day.
    while day <= date(2028, 3, 2):
        if day.month in (2, 3):
            for hour in (0, 5):
                at_time = shanghai_morning(day) + timedelta(hours=hour)
                if (await daily(sandbox, at_time))[0]:
                    greeted.append(day)
        day += timedelta(days=1)
    assert sorted(set(greeted)) == [common_year_day, date(2028, 2, 29)]
    await deliver(sandbox)
    cakes = [t for t in texts(sandbox, 7104) if t.startswith("🐾 祝「闰闰」生日快乐")]
    assert len(cakes) == 2  # once a year, however often the job runs
    assert (await sandbox.services.mall.redemptions(dave.id))[1] == 2


async def test_a_missed_day_is_caught_up(sandbox: Sandbox) -> None:
    erin = await member_with(sandbox, 7105, 0)
    await adding(sandbox, erin, "child", "Lily", "03-15")
    services = sandbox.services
    await daily(sandbox, shanghai_morning(date(2027, 3, 13)))
    # Down on 14 and 15 March; back on the 16th at 10:00.
    back = shanghai_morning(date(2027, 3, 16))
    at(sandbox, back)
    done = await services.scheduler.catch_up(back)
    assert [d for d in done if d.startswith("daily_pushes")] == [
        "daily_pushes 2027-03-14",
        "daily_pushes 2027-03-15",
        "daily_pushes 2027-03-16",
    ]
    await deliver(sandbox)
    greeting = "🎂 祝「Lily」生日快乐！送您 66 积分生日礼，已存入账户。"
    assert texts(sandbox, 7105).count(greeting) == 1
    assert await available(sandbox, erin) == 66


async def test_the_members_own_birthday_and_a_childs_on_one_day(sandbox: Sandbox) -> None:
    frank = await member_with(sandbox, 7106, 0)
    await sandbox.services.pushes.set_birthday(
        7106, 3, 15, None, now=NOW, change_allowed_after=NOW - timedelta(days=365)
    )
    await adding(sandbox, frank, "child", "小宝", "03-15")
    at(sandbox, MIDNIGHT_MAR_15)
    report = await sandbox.services.scheduler.daily(MIDNIGHT_MAR_15)
    assert (report.gifts, report.family_gifts) == (1, 1)
    assert await available(sandbox, frank) == 88 + 66


async def test_a_sold_out_cake_comes_as_its_price_in_points(sandbox: Sandbox) -> None:
    gina = await member_with(sandbox, 7107, 0)
    await adding(sandbox, gina, "pet", "Mimi", "03-15")
    await sandbox.services.mall.set_stock("PET-CAKE", 0)
    assert await daily(sandbox, MIDNIGHT_MAR_15) == (1, 1)
    await deliver(sandbox)
    assert "🐾 祝「Mimi」生日快乐！送您 500 积分生日礼，已存入账户。" in texts(sandbox, 7107)
    assert await available(sandbox, gina) == 500
    assert (await sandbox.services.mall.redemptions(gina.id))[1] == 0
    # Once: the cake back in stock the same day changes nothing.
    await sandbox.services.mall.set_stock("PET-CAKE", 10)
    assert await daily(sandbox, MIDNIGHT_MAR_15 + timedelta(hours=9)) == (1, 0)
    assert await available(sandbox, gina) == 500
    await assert_audit_ok(sandbox)
