"""Tiers going down: the yearly review on 1 January, the notice a month before, the catch-up
after the bot was down, and a return that undoes the upgrade it caused (back down, the entry
reward taken back, paid again on crossing again) or leaves a tier held since earlier alone.

Every test moves the services' clock (FixedClock) and passes the job its instant, across the
turn of a year chosen by the test, so the suite passes on any real date.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FixedClock
from bot.programme.purchase_returns import return_purchase
from bot.programme.purchases import record_purchase
from bot.programme.task_progress import withdraw_purchase
from storage import tier_reviews
from storage.audit import audit
from storage.members import Member
from storage.tiers import change_tier
from tests.conftest import Sandbox, member_with

SHANGHAI = ZoneInfo("Asia/Shanghai")
YEARS = [2026, 2031]


def local(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


async def buy(sandbox: Sandbox, member: Member, amount: str, receipt: str, at: datetime) -> int:
    """A till purchase at `at` (the clock moved there); return its operation id."""
    sandbox.services.clock = FixedClock(at)
    result = await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        "general",
        receipt,
        purchased_at=at,
        actor="till:test",
    )
    assert result.status == "recorded"

    def operation(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT id FROM operations WHERE idempotency_key = ?", (f"purchase:{receipt}",)
        ).fetchone()
        return int(row[0])

    return await sandbox.services.store.read(operation)


async def daily(sandbox: Sandbox, at: datetime) -> tuple[int, int]:
    """The daily job at `at`; return (notices, downgrades) it made."""
    sandbox.services.clock = FixedClock(at)
    report = await sandbox.services.scheduler.daily(at)
    return report.tier_notices, report.tier_downgrades


async def held(sandbox: Sandbox, member: Member) -> str | None:
    return await sandbox.services.tiers.held_one(member.id)


async def told(sandbox: Sandbox, user_id: int, at: datetime) -> list[str]:
    """What the member has received, once the outbox is drained at `at`."""
    sandbox.services.clock = FixedClock(at)
    await sandbox.services.sender.drain()
    return [m.text or "" for m in sandbox.emu.messages(user_id) if m.from_bot]


async def points_state(sandbox: Sandbox, members: list[Member]) -> object:
    """Every member's operations and lots (with what remains of each): what no tier change may
    touch (a balance read at another instant would differ by what expired in between)."""
    ids = str([m.id for m in members])

    def rows(conn: sqlite3.Connection) -> list[list[tuple[object, ...]]]:
        return [
            [
                tuple(row)
                for row in conn.execute(
                    f"SELECT {columns} FROM {table}"  # noqa: S608 - fixed names
                    " WHERE member_id IN (SELECT value FROM json_each(?)) ORDER BY id",
                    (ids,),
                )
            ]
            for table, columns in (
                ("lots", "id, member_id, points, remainder, expires_at"),
                ("operations", "id, kind, member_id, points"),
            )
        ]

    return await sandbox.services.store.read(rows)


@pytest.mark.parametrize("year", YEARS)
async def test_the_review_on_1_january_moves_members_down_one_step_and_never_touches_points(
    sandbox: Sandbox, year: int
) -> None:
    kept = await member_with(sandbox, 8501, 0)  # tree, and bought enough this year
    capped = await member_with(sandbox, 8502, 0)  # forest, this year's total only reaches leaf
    stepped = await member_with(sandbox, 8503, 0, lang="en")  # forest, this year reaches tree
    lowered = await member_with(sandbox, 8504, 0)  # leaf by staff, this year reaches tree
    await buy(sandbox, kept, "5100", "K1", local(year, 3, 10))
    await buy(sandbox, capped, "20000", "C0", local(year - 1, 12, 20))
    await buy(sandbox, capped, "1200", "C1", local(year, 6, 1))
    await buy(sandbox, stepped, "20000", "S0", local(year - 1, 12, 20))
    await buy(sandbox, stepped, "8000", "S1", local(year, 6, 1))
    await buy(sandbox, lowered, "6000", "L1", local(year, 4, 1))
    at = local(year, 4, 2)
    await sandbox.services.store.write(
        lambda conn: change_tier(
            conn, lowered.id, "tree", "leaf", reason="staff", total=6000, actor="staff:t", now=at
        )
    )
    assert [await held(sandbox, m) for m in (kept, capped, stepped, lowered)] == [
        "tree",
        "forest",
        "forest",
        "leaf",
    ]
    members = [kept, capped, stepped, lowered]
    before = await points_state(sandbox, members)

    # 31 December, late: the old year still counts, nobody moves (the two short of their tier
    # are told now: the first run inside the notice window).
    assert await daily(sandbox, local(year, 12, 31, 23, 59)) == (2, 0)
    assert await held(sandbox, capped) == "forest"
    # 1 January: the review of the year just ended.
    assert (await daily(sandbox, local(year + 1, 1, 1)))[1] == 2
    assert [await held(sandbox, m) for m in members] == ["tree", "tree", "tree", "leaf"]
    [_, change] = await sandbox.services.tiers.tier_changes(capped.id)
    assert (change.from_tier, change.to_tier, change.reason, change.total, change.actor) == (
        "forest",
        "tree",
        "review",
        1200,
        "system:tiers",
    )
    assert await points_state(sandbox, members) == before

    zh = await told(sandbox, 8502, local(year + 1, 1, 1, 9, 5))
    assert any(
        text.startswith(f"📋 会员等级年度评定：根据您 {year} 年的累计消费，会员等级调整为🌳绿树。")
        and f"已获得的积分全部保留，不受影响。{year + 1} 年内累计消费满 ¥20000，即可重回🌲森林。"
        in text
        for text in zh
    ), zh
    en = await told(sandbox, 8503, local(year + 1, 1, 1, 9, 5))
    assert any(
        f"based on your spending in {year}, you are now a 🌳Tree member." in text
        and f"Spend ¥20000 in {year + 1} to return to 🌲Forest." in text
        for text in en
    ), en
    assert not any("年度评定" in text for text in await told(sandbox, 8501, local(year + 1, 1, 2)))

    # Run again (a restart, the next day): nothing moves twice, nothing is said twice.
    assert await daily(sandbox, local(year + 1, 1, 1, 15)) == (0, 0)
    assert await daily(sandbox, local(year + 1, 1, 2)) == (0, 0)
    assert [await held(sandbox, m) for m in members] == ["tree", "tree", "tree", "leaf"]
    assert len([t for t in await told(sandbox, 8502, local(year + 1, 1, 2, 10)) if "📋" in t]) == 1
    assert await points_state(sandbox, members) == before
    report = await sandbox.services.store.read(audit)
    assert report.ok, str(report)


async def test_two_steps_down_when_the_config_allows_it(sandbox: Sandbox) -> None:
    config = sandbox.services.config
    sandbox.services.config = config.model_copy(
        update={"tiers": config.tiers.model_copy(update={"max_downgrade_steps": 2})}
    )
    member = await member_with(sandbox, 8511, 0)
    await buy(sandbox, member, "20000", "F0", local(2026, 12, 20))
    await buy(sandbox, member, "10", "F1", local(2027, 2, 1))
    await daily(sandbox, local(2027, 12, 31, 23))
    assert await held(sandbox, member) == "forest"
    assert await daily(sandbox, local(2028, 1, 1)) == (0, 1)
    assert await held(sandbox, member) == "leaf"  # two steps, not down to sprout


@pytest.mark.parametrize("year", YEARS)
async def test_the_notice_on_2_december_says_what_keeps_the_tier_once(
    sandbox: Sandbox, year: int
) -> None:
    short = await member_with(sandbox, 8521, 0)
    qualified = await member_with(sandbox, 8522, 0)
    english = await member_with(sandbox, 8523, 0, lang="en")
    await buy(sandbox, short, "5000", "N0", local(year - 1, 12, 10))  # tree last year
    await buy(sandbox, short, "1100", "N1", local(year, 5, 1))
    await buy(sandbox, qualified, "5000", "Q1", local(year, 5, 1))
    await buy(sandbox, english, "5000", "E0", local(year - 1, 12, 10))
    await buy(sandbox, english, "4500.50", "E1", local(year, 5, 1))

    assert (await daily(sandbox, local(year, 12, 1, 23)))[0] == 0  # not yet
    assert (await daily(sandbox, local(year, 12, 2)))[0] == 2
    texts = await told(sandbox, 8521, local(year, 12, 2, 9, 5))
    assert (
        f"⏳ 再消费 ¥3900，于 {year + 1}-01-01 评定前保级🌳绿树。{year} 年累计消费未满 ¥5000 的，"
        "评定时会员等级将下调；已获得的积分不受影响。"
    ) in texts
    assert not any("⏳" in t for t in await told(sandbox, 8522, local(year, 12, 2, 9, 5)))
    english_texts = await told(sandbox, 8523, local(year, 12, 2, 9, 5))
    assert any(
        t.startswith(f"⏳ Spend ¥500 more before the review on 1 January {year + 1} to keep 🌳Tree")
        for t in english_texts
    ), english_texts
    # Later days of the window tell nobody again.
    assert (await daily(sandbox, local(year, 12, 3)))[0] == 0
    assert (await daily(sandbox, local(year, 12, 31)))[0] == 0
    assert len([t for t in await told(sandbox, 8521, local(year, 12, 31, 10)) if "⏳" in t]) == 1


async def test_a_late_start_catches_up_the_notice_and_the_review(sandbox: Sandbox) -> None:
    short = await member_with(sandbox, 8531, 0)
    recovered = await member_with(sandbox, 8532, 0)
    january = await member_with(sandbox, 8533, 0)
    for n, member in enumerate((short, recovered, january)):
        await buy(sandbox, member, "5000", f"B{n}", local(2026, 12, 10))
    await buy(sandbox, recovered, "1000", "R1", local(2027, 3, 1))
    await sandbox.services.scheduler.daily(local(2027, 11, 30))
    # Down from 1 December; meanwhile one member buys enough to keep the tier.
    await buy(sandbox, recovered, "4000", "R2", local(2027, 12, 5))
    at = local(2027, 12, 8, 10)
    sandbox.services.clock = FixedClock(at)
    await sandbox.services.scheduler.catch_up(at)
    assert any("⏳ 再消费 ¥5000" in t for t in await told(sandbox, 8531, at))
    assert not any("⏳" in t for t in await told(sandbox, 8532, at))
    await sandbox.services.scheduler.daily(local(2027, 12, 30))
    # Down over the new year; on 2 January one member buys into tree again for this year.
    await buy(sandbox, january, "5000", "J1", local(2028, 1, 2))
    at = local(2028, 1, 4, 10)
    sandbox.services.clock = FixedClock(at)
    done = await sandbox.services.scheduler.catch_up(at)
    assert "daily_pushes 2028-01-01" in done
    assert [await held(sandbox, m) for m in (short, recovered, january)] == [
        "leaf",
        "tree",
        "tree",  # what they bought since the review day already reaches tree
    ]
    assert any("📋" in t for t in await told(sandbox, 8531, at))


async def test_withdrawing_a_purchase_takes_its_figures_out_once_and_moves_no_tier(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8541, 0)
    await buy(sandbox, member, "1000", "P1", local(2027, 3, 1))
    returned = await buy(sandbox, member, "4100", "P2", local(2027, 3, 2))
    assert await held(sandbox, member) == "tree"
    entry_rewards = 100 + 300
    balance = (await sandbox.services.ledger.balance(member.id)).available
    # The second purchase was booked at leaf (×1.1): 410 of its 4,510 points are the tier's.
    assert balance == 1000 + 4100 + 410 + entry_rewards
    config = sandbox.services.config
    at = local(2027, 3, 5)

    def withdraw(conn: sqlite3.Connection) -> object:
        return withdraw_purchase(conn, returned, config, at, actor="return:test")

    await sandbox.services.store.write(withdraw)
    await sandbox.services.store.write(withdraw)  # a second call takes nothing more
    figures = await sandbox.services.tiers.qualifying_one(member.id, ["2027-03"])
    assert (figures.fen, figures.points) == (100_000, 1000)

    def withdrawn(conn: sqlite3.Connection) -> bool:
        return tier_reviews.withdraw_figures(conn, returned, member.id, "2027-03", 1, 1, at)

    assert await sandbox.services.store.write(withdrawn) is False
    # Taking the figures out moves no tier by itself: the return that calls it decides
    # (bot.programme.tier_review.undo_upgrade, the tests below); the review still does.
    assert await held(sandbox, member) == "tree"
    await daily(sandbox, local(2027, 12, 31, 23))
    assert await held(sandbox, member) == "tree"
    assert await daily(sandbox, local(2028, 1, 1)) == (0, 1)
    assert await held(sandbox, member) == "leaf"
    # The returned purchase's own points are the return flow's business; the tiers took none.
    assert (await sandbox.services.ledger.balance(member.id)).available == balance
    report = await sandbox.services.store.read(audit)
    assert report.ok, str(report)


async def test_the_review_and_the_notice_work_in_batches(sandbox: Sandbox) -> None:
    members = [await member_with(sandbox, 8550 + n, 0) for n in range(5)]
    for n, member in enumerate(members):
        await buy(sandbox, member, "5000", f"M{n}", local(2026, 12, 10))
    rules = tier_reviews.ReviewRules(
        levels=[(t.id, t.threshold) for t in sandbox.services.config.tiers.levels],
        by_points=False,
        first_month="2027-01",
        last_month="2027-12",
        since_first="2028-01",
        since_last="2028-01",
        max_steps=1,
        review_at=local(2028, 1, 1, 0),
    )
    messages = tier_reviews.ReviewMessages("tiers.review_downgraded", {}, "tier-review:test:")
    reviews = sandbox.services.scheduler.tier_reviews
    at = local(2028, 1, 1)
    assert await reviews.review(rules, messages, actor="system:tiers", now=at, batch=2) == 5
    assert {await held(sandbox, m) for m in members} == {"leaf"}
    # Reviewed already (moved since the review day): a rerun moves nobody.
    assert await reviews.review(rules, messages, actor="system:tiers", now=local(2028, 1, 1)) == 0


async def test_measured_in_purchase_points_the_notice_and_the_review_say_points(
    sandbox: Sandbox,
) -> None:
    config = sandbox.services.config
    sandbox.services.config = config.model_copy(
        update={"tiers": config.tiers.model_copy(update={"measure": "purchase_points"})}
    )
    member = await member_with(sandbox, 8561, 0, lang="en")
    await buy(sandbox, member, "5000", "PP0", local(2026, 12, 10))
    earned = (await sandbox.services.tiers.qualifying_one(member.id, ["2026-12"])).points
    assert earned >= 5000 and await held(sandbox, member) == "tree"
    await buy(sandbox, member, "300", "PP1", local(2027, 2, 1))
    this_year = (await sandbox.services.tiers.qualifying_one(member.id, ["2027-02"])).points
    assert (await daily(sandbox, local(2027, 12, 2)))[0] == 1
    texts = await told(sandbox, 8561, local(2027, 12, 2, 9, 5))
    assert any(
        t.startswith(
            f"⏳ Earn {5000 - this_year} more purchase points before the review on"
            " 1 January 2028 to keep 🌳Tree."
        )
        for t in texts
    ), texts
    assert (await daily(sandbox, local(2028, 1, 1)))[1] == 1
    texts = await told(sandbox, 8561, local(2028, 1, 1, 9, 5))
    assert any(
        "based on the purchase points you earned in 2027, you are now a 🍃Leaf member." in t
        and "Earn 5000 purchase points in 2028 to return to 🌳Tree." in t
        for t in texts
    ), texts


async def test_a_review_caught_up_weeks_late_counts_every_purchase_since_1_january(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8571, 0)
    await buy(sandbox, member, "5000", "W0", local(2026, 12, 10))
    await sandbox.services.scheduler.daily(local(2027, 12, 30))
    # Down from 31 December to 3 February: January and February purchases reach tree again.
    await buy(sandbox, member, "3000", "W1", local(2028, 1, 10))
    await buy(sandbox, member, "2500", "W2", local(2028, 2, 2))
    at = local(2028, 2, 3, 10)
    sandbox.services.clock = FixedClock(at)
    await sandbox.services.scheduler.catch_up(at)
    assert await held(sandbox, member) == "tree"
    assert not any("📋" in t for t in await told(sandbox, 8571, at))


async def refund(
    sandbox: Sandbox, receipt: str, amount: str | None, return_id: str, at: datetime
) -> None:
    """A refund of `amount` yuan (None: all that is left) of a purchase, at `at`."""
    sandbox.services.clock = FixedClock(at)
    returned = await return_purchase(
        sandbox.services, receipt, amount, return_id=return_id, actor="till:test"
    )
    assert returned.status == "returned"


async def tier_rows(
    sandbox: Sandbox, member: Member, kind: str
) -> list[tuple[str, int, str | None]]:
    """The member's operations of `kind` (key, points, what it reverses), oldest first."""

    def read(conn: sqlite3.Connection) -> list[tuple[str, int, str | None]]:
        return [
            (str(key), int(points), None if back is None else str(back))
            for key, points, back in conn.execute(
                "SELECT o.idempotency_key, o.points, r.idempotency_key FROM operations AS o"
                " LEFT JOIN operations AS r ON r.id = o.reverses_operation_id"
                " WHERE o.member_id = ? AND o.kind = ? ORDER BY o.id",
                (member.id, kind),
            )
        ]

    return await sandbox.services.store.read(read)


async def changes(sandbox: Sandbox, member: Member) -> list[tuple[str | None, str, str]]:
    return [
        (c.from_tier, c.to_tier, c.reason)
        for c in await sandbox.services.tiers.tier_changes(member.id)
    ]


async def tier_shown(sandbox: Sandbox, user_id: int) -> str:
    """The line /tier marks as the member's own."""
    [reply] = await sandbox.member(user_id).send("/tier")
    [line] = [line for line in (reply.text or "").splitlines() if "👈" in line]
    return line


async def assert_ledger_adds_up(sandbox: Sandbox) -> None:
    config = sandbox.services.config
    levels = [t.id for t in config.tiers.levels]

    def check(conn: sqlite3.Connection) -> object:
        return audit(conn, tier_levels=levels, tz=config.program.tz)

    report = await sandbox.services.store.read(check)
    assert report.ok, str(report)


async def test_a_refund_undoing_an_upgrade_moves_back_takes_the_gift_back_and_owes_it(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8601, 0)
    await buy(sandbox, member, "1000", "U1", local(2027, 3, 1))  # leaf: +100
    await buy(sandbox, member, "4100", "U2", local(2027, 3, 2))  # tree: 4,510 points, +300
    assert await held(sandbox, member) == "tree"
    # Spent nearly everything: the gifts (dated) went first, then the oldest purchase points.
    sandbox.services.clock = FixedClock(local(2027, 3, 3))
    await sandbox.services.ledger.spend(
        member.id, 5500, key="spend:8601", actor="t", reason="mall", reference=None
    )
    await refund(sandbox, "U2", None, "RET-U2", local(2027, 3, 5))
    assert await held(sandbox, member) == "leaf"
    assert (await changes(sandbox, member))[-1] == ("tree", "leaf", "return")
    # Only the tree's gift goes back (leaf is still reached): it was spent, so it is owed on
    # top of the 4,100 of the purchase's own points the member had used.
    reversals = await tier_rows(sandbox, member, "tier_reversal")
    tree_key = f"tier_entry:tree:{member.id}:2027"
    assert [(points, back) for _key, points, back in reversals] == [(300, tree_key)]
    balance = await sandbox.services.ledger.balance(member.id)
    assert (balance.available, balance.owed) == (0, 4100 + 300)
    texts = await told(sandbox, 8601, local(2027, 3, 5, 10))
    assert texts[-1] == (
        "↩️ 小票 U2 已退款，您今年的消费不再达到🌳绿树会员的门槛，会员等级已调回🍃绿叶会员，"
        "升级时发放的 300 积分会员礼需收回。这些积分您已使用，记为待抵扣积分（目前共 4400 积分），"
        "将从您之后消费获得的积分中自动抵扣。其他消费已获得的积分不受影响。"
    )
    assert "🍃绿叶" in await tier_shown(sandbox, 8601)
    await assert_ledger_adds_up(sandbox)


async def test_crossing_again_after_a_refund_pays_the_gift_again_once_each_time(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8602, 0)
    await buy(sandbox, member, "1000", "A1", local(2027, 4, 1))
    await buy(sandbox, member, "4000", "A2", local(2027, 4, 2))  # tree
    await refund(sandbox, "A2", None, "RET-A2", local(2027, 4, 3))
    assert await held(sandbox, member) == "leaf"
    await buy(sandbox, member, "4000", "A3", local(2027, 4, 4))  # tree again
    assert await held(sandbox, member) == "tree"
    key = f"tier_entry:tree:{member.id}:2027"
    gifts = [(k, p) for k, p, _back in await tier_rows(sandbox, member, "tier")]
    assert gifts == [
        (f"tier_entry:leaf:{member.id}:2027", 100),
        (key, 300),
        (f"{key}:2", 300),
    ]
    # A purchase after that, still in tree, pays nothing more.
    await buy(sandbox, member, "100", "A4", local(2027, 4, 5))
    assert len(await tier_rows(sandbox, member, "tier")) == 3
    # Out and in once more: the second gift goes back, a third is paid.
    await refund(sandbox, "A3", None, "RET-A3", local(2027, 4, 6))
    assert await held(sandbox, member) == "leaf"
    await buy(sandbox, member, "4000", "A5", local(2027, 4, 7))
    assert [k for k, _p, _b in await tier_rows(sandbox, member, "tier")][-1] == f"{key}:3"
    reversals = [back for _k, _p, back in await tier_rows(sandbox, member, "tier_reversal")]
    assert reversals == [key, f"{key}:2"]
    # Every crossing was congratulated, and the gift announced each time it was paid.
    texts = await told(sandbox, 8602, local(2027, 4, 7, 10))
    assert sum("恭喜升级为🌳绿树会员" in t for t in texts) == 3
    assert sum(t.startswith("🎁 绿树会员礼") for t in texts) == 3
    assert (
        sum("会员等级已调回🍃绿叶会员，升级时发放的 300 积分会员礼已收回" in t for t in texts) == 2
    )
    assert "🌳绿树" in await tier_shown(sandbox, 8602)
    await assert_ledger_adds_up(sandbox)


async def test_a_partial_refund_keeps_the_tier_while_the_total_reaches_it(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8603, 0)
    await buy(sandbox, member, "1000", "B1", local(2027, 5, 1))
    await buy(sandbox, member, "4500", "B2", local(2027, 5, 2))  # 5,500: tree
    await refund(sandbox, "B2", "300", "RET-B2a", local(2027, 5, 3))  # 5,200 left
    assert await held(sandbox, member) == "tree"
    assert await tier_rows(sandbox, member, "tier_reversal") == []
    await refund(sandbox, "B2", "300", "RET-B2b", local(2027, 5, 4))  # 4,900: below tree
    assert await held(sandbox, member) == "leaf"
    # The gift was still there: taken from it, nothing owed.
    assert [p for _k, p, _b in await tier_rows(sandbox, member, "tier_reversal")] == [300]
    assert (await sandbox.services.ledger.balance(member.id)).owed == 0
    texts = await told(sandbox, 8603, local(2027, 5, 4, 10))
    assert texts[-1].endswith(
        "会员等级已调回🍃绿叶会员，升级时发放的 300 积分会员礼已收回。"
        "其他消费已获得的积分不受影响。"
    )
    await assert_ledger_adds_up(sandbox)


async def test_a_refund_never_takes_a_tier_held_since_last_year(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8604, 0)
    await buy(sandbox, member, "5200", "C1", local(2026, 6, 1))  # tree in 2026
    assert await daily(sandbox, local(2027, 1, 1)) == (0, 0)  # the review keeps it
    await buy(sandbox, member, "800", "C2", local(2027, 2, 1))
    await refund(sandbox, "C2", None, "RET-C2", local(2027, 2, 2))
    assert await held(sandbox, member) == "tree"
    assert await tier_rows(sandbox, member, "tier_reversal") == []
    assert [reason for _f, _t, reason in await changes(sandbox, member)] == ["upgrade"]
    await assert_ledger_adds_up(sandbox)


async def test_a_refund_goes_no_lower_than_the_tier_the_review_left(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8605, 0)
    await buy(sandbox, member, "6000", "D1", local(2026, 6, 1))  # tree in 2026
    at = local(2026, 6, 2)
    await sandbox.services.store.write(
        lambda conn: change_tier(
            conn, member.id, "tree", "forest", reason="staff", total=6000, actor="staff:t", now=at
        )
    )
    assert await daily(sandbox, local(2027, 1, 1)) == (0, 1)  # the review: forest -> tree
    assert await held(sandbox, member) == "tree"
    await buy(sandbox, member, "20000", "D3", local(2027, 3, 1))  # forest again, +800
    assert await held(sandbox, member) == "forest"
    await refund(sandbox, "D3", None, "RET-D3", local(2027, 3, 2))
    # Purchases this year reach nothing above sprout, but the review left tree: tree it is.
    assert await held(sandbox, member) == "tree"
    assert [p for _k, p, _b in await tier_rows(sandbox, member, "tier_reversal")] == [800]
    await assert_ledger_adds_up(sandbox)


async def test_a_refund_leaves_a_tier_alone_when_the_total_was_short_before_it(
    sandbox: Sandbox,
) -> None:
    config = sandbox.services.config
    sandbox.services.config = config.model_copy(
        update={"tiers": config.tiers.model_copy(update={"window": "rolling_12_months"})}
    )
    member = await member_with(sandbox, 8606, 0)
    await buy(sandbox, member, "4500", "E1", local(2026, 12, 1))  # leaf
    await buy(sandbox, member, "600", "E2", local(2027, 2, 1))  # 5,100 over 12 months: tree
    assert await held(sandbox, member) == "tree"
    # By December 2026's purchase has left the window: the total is short of tree, which the
    # review decides; a small refund then does not take the tier away.
    await buy(sandbox, member, "100", "E3", local(2027, 12, 10))
    await refund(sandbox, "E3", None, "RET-E3", local(2027, 12, 11))
    assert await held(sandbox, member) == "tree"
    assert await tier_rows(sandbox, member, "tier_reversal") == []
    await assert_ledger_adds_up(sandbox)


async def test_in_english_a_gift_partly_spent_is_taken_and_the_rest_owed(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8607, 0, "en")
    await buy(sandbox, member, "1000", "G1", local(2027, 6, 1))  # 1,000 points, leaf: +100
    await buy(sandbox, member, "4100", "G2", local(2027, 6, 2))  # 4,510 points, tree: +300
    # Spending takes the dated gifts first, then the oldest purchase: 100 of G1's points stay.
    sandbox.services.clock = FixedClock(local(2027, 6, 3))
    await sandbox.services.ledger.spend(
        member.id, 1300, key="spend:8607", actor="t", reason="mall", reference=None
    )
    await refund(sandbox, "G2", None, "RET-G2", local(2027, 6, 4))
    balance = await sandbox.services.ledger.balance(member.id)
    assert (balance.available, balance.owed) == (0, 200)
    texts = await told(sandbox, 8607, local(2027, 6, 4, 10))
    assert texts[-1] == (
        "↩️ Receipt G2 was refunded, so your purchases this year no longer reach 🌳Tree, the"
        " tier they had taken you to: you are a 🍃Leaf member again, and the 300 welcome-gift"
        " points paid when you moved up are taken back: 100 from your account; you had already"
        " used the other 200, so they are owed (200 owed in all) and will come off the points"
        " your next purchases earn. The points you earned on your other purchases stay yours."
    )
    chat = sandbox.member(8607, language_code="en")
    [reply] = await chat.send("/tier")
    [line] = [line for line in (reply.text or "").splitlines() if "👈" in line]
    assert "🍃Leaf" in line
    # /history names what went back: the purchase's points and the tree's gift.
    [reply] = await chat.send("/history")
    [line] = [line for line in (reply.text or "").splitlines() if "welcome gift taken" in line]
    assert "🌳Tree welcome gift taken back after a refund" in line and "-100" in line
    await assert_ledger_adds_up(sandbox)
