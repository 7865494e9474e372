"""Tier benefits outside earning, each quoted before the member confirms and re-checked with
the tier read inside the confirming transaction: tier-only mall items, early access to new
items, the birthday gift, extra free wheel spins and the bill-deduction rate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import FixedClock
from bot.config import Config, MallItem, load_config
from bot.programme.purchases import record_purchase
from bot.programme.tier_benefits import (
    birthday_gift_points,
    deduction_rate,
    free_plays,
    item_access,
)
from storage.members import Member
from storage.plans import PlanTerms, add_plan, end_plan
from storage.tiers import change_tier
from tests.conftest import NOW, Sandbox, assert_audit_ok, available, member_with
from tests.games_support import THANKS, ForcedDraws, with_wheel

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
GENERAL_AT = NOW + timedelta(days=2)
TREE_AT = NOW + timedelta(days=1)
FOREST_AT = NOW - timedelta(hours=1)


def with_items(config: Config) -> Config:
    """A tree-and-above gift box, and a new flask open to everyone in two days, to tree
    members in one, and to forest members since an hour ago."""
    box = MallItem.model_validate(
        {
            "sku": "TREE-BOX",
            "name": {"zh-CN": "会员礼盒", "en": "Members' gift box"},
            "description": {"zh-CN": "绿树及以上会员专享。", "en": "For Tree and above."},
            "category": "home",
            "kind": "goods",
            "price": 100,
            "min_tier": "tree",
        }
    )
    flask = MallItem.model_validate(
        {
            "sku": "NEW-FLASK",
            "name": {"zh-CN": "新品保温杯", "en": "New flask"},
            "description": {"zh-CN": "新品首发。", "en": "Just launched."},
            "category": "home",
            "kind": "goods",
            "price": 50,
            "available_from": GENERAL_AT,
            "tier_available_from": {"tree": TREE_AT, "forest": FOREST_AT},
        }
    )
    mall = config.mall.model_copy(update={"items": [*config.mall.items, box, flask]})
    return config.model_copy(update={"mall": mall})


@pytest.fixture
def configure() -> list[Callable[[Config], Config]]:
    return [with_items, with_wheel()]


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did through the bot, the ledger, the mall and the games add up."""
    yield
    await assert_audit_ok(sandbox)


async def hold(sandbox: Sandbox, member: Member, tier_id: str) -> None:
    """Put the member in a tier as staff would (the purchase path is tested in
    test_tiers_core and below for the deduction rate)."""
    services = sandbox.services
    held = await services.tiers.held_one(member.id)
    now = services.clock()
    await services.store.write(
        lambda conn: change_tier(
            conn, member.id, held, tier_id, reason="staff", total=0, actor="test", now=now
        )
    )


# --- the one access rule ----------------------------------------------------------------------


def test_item_access_by_tier_and_moment() -> None:
    config = with_items(load_config(SAMPLE))
    box, flask = config.mall.item("TREE-BOX"), config.mall.item("NEW-FLASK")
    assert box is not None and flask is not None
    sprout, leaf, tree, forest = config.tiers.levels
    assert item_access(box, leaf, NOW, config).reason == "tier_only"
    assert item_access(box, leaf, NOW, config).needed == tree
    assert item_access(box, tree, NOW, config).allowed
    assert item_access(box, forest, NOW, config).allowed
    # A personal plan's priority item counts the member as the top tier.
    assert item_access(box, sprout, NOW, config, priority_skus={"TREE-BOX"}).allowed
    # Early access: forest from an hour ago, tree from tomorrow, everyone in two days.
    assert item_access(flask, forest, NOW, config).allowed
    assert item_access(flask, forest, NOW, config).early_by == forest
    before_tree = item_access(flask, tree, NOW, config)
    assert (before_tree.reason, before_tree.opens_at) == ("not_started", TREE_AT)
    assert item_access(flask, tree, TREE_AT, config).allowed
    assert item_access(flask, leaf, TREE_AT, config).reason == "not_started"
    assert item_access(flask, leaf, GENERAL_AT - timedelta(seconds=1), config).opens_at == (
        GENERAL_AT
    )
    assert item_access(flask, leaf, GENERAL_AT, config).allowed
    assert item_access(flask, sprout, NOW, config, priority_skus={"NEW-FLASK"}).allowed
    # No tiers at all: nothing but the general opening.
    assert item_access(flask, None, NOW, config).opens_at == GENERAL_AT


def test_the_figures_of_each_tier() -> None:
    config = load_config(SAMPLE)
    sprout, leaf, tree, forest = config.tiers.levels
    assert [birthday_gift_points(t, config) for t in (None, sprout, leaf, tree, forest)] == [
        88,
        88,
        128,
        188,
        288,
    ]
    assert [deduction_rate(t, config) for t in (sprout, tree, forest)] == [100, 100, 90]
    assert [free_plays("wheel", 1, 10, t) for t in (sprout, tree, forest)] == [1, 2, 3]
    assert free_plays("wheel", 1, 2, forest) == 2  # never past the day's limit
    assert free_plays("scratch", 1, 10, forest) == 1  # the tiers add wheel spins only


# --- tier-only items --------------------------------------------------------------------------


async def test_a_tier_only_item_is_marked_and_refused_below_its_tier(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9601, 1000)
    chat = sandbox.member(9601)
    await chat.send("/mall")
    await chat.tap("环保家居")
    assert "会员礼盒 · 100 积分 · 🌳绿树及以上专享" in chat.buttons()
    await chat.tap("会员礼盒")
    card = chat.last_text or ""
    assert "🔒 🌳绿树及以上会员专享，您当前的等级暂不能兑换。" in card
    assert "🎁 兑换" not in chat.buttons()
    # A forged (or stale) Redeem button gets the refusal naming the tier, and costs nothing.
    last = chat.last_message
    assert last is not None
    await chat.tap_data(last.message_id, "mall:buy:TREE-BOX", expect=0)
    assert chat.last_callback_answer == (
        "抱歉，这件商品仅限🌳绿树及以上会员兑换。"
        "消费累计达到该等级后即可兑换，发送 /tier 查看各等级。"
    )
    assert await available(sandbox, member) == 1000


async def test_the_tier_only_refusal_in_english(sandbox: Sandbox) -> None:
    await member_with(sandbox, 9602, 1000, lang="en")
    chat = sandbox.member(9602, language_code="en")
    await chat.send("/mall")
    await chat.tap("Green home")
    assert "Members' gift box · 100 points · 🌳 Tree and above only" in chat.buttons()
    await chat.tap("Members' gift box")
    assert "🔒 Only for 🌳 Tree members and above" in (chat.last_text or "")
    last = chat.last_message
    assert last is not None
    await chat.tap_data(last.message_id, "mall:buy:TREE-BOX", expect=0)
    assert chat.last_callback_answer == (
        "Sorry, this item is only for 🌳 Tree members and above. Reach that tier to redeem it;"
        " /tier shows every tier."
    )


async def test_a_member_of_the_tier_redeems_it_and_a_dropped_tier_cannot_confirm(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 9603, 1000)
    await hold(sandbox, member, "tree")
    chat = sandbox.member(9603)
    await chat.send("/mall")
    await chat.tap("环保家居")
    await chat.tap("会员礼盒")
    assert "🔓 🌳绿树及以上会员专享，您可以兑换。" in (chat.last_text or "")
    await chat.tap("🎁 兑换")
    await chat.tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, member) == 900
    # Quoted as a tree member, then moved down before confirming: refused, nothing spent.
    await chat.send("/mall")
    await chat.tap("环保家居")
    await chat.tap("会员礼盒")
    await chat.tap("🎁 兑换")
    await hold(sandbox, member, "leaf")
    await chat.tap("✅ 确认兑换", expect=0)
    assert (chat.last_callback_answer or "").startswith("抱歉，这件商品仅限🌳绿树及以上会员兑换。")
    assert await available(sandbox, member) == 900


# --- early access ----------------------------------------------------------------------------


async def test_early_access_before_and_after_each_moment(sandbox: Sandbox) -> None:
    forest = await member_with(sandbox, 9611, 500)
    tree = await member_with(sandbox, 9612, 500)
    sprout = await member_with(sandbox, 9613, 500)
    await hold(sandbox, forest, "forest")
    await hold(sandbox, tree, "tree")
    when = {
        at: at.astimezone(sandbox.config.program.tz).strftime("%Y-%m-%d %H:%M")
        for at in (GENERAL_AT, TREE_AT, FOREST_AT)
    }

    chats = {user_id: sandbox.member(user_id) for user_id in (9611, 9612, 9613)}

    async def card(user_id: int) -> str:
        chat = chats[user_id]
        await chat.send("/mall")
        await chat.tap("环保家居")
        await chat.tap("新品保温杯")
        return chat.last_text or ""

    # Forest: open since an hour ago, a day before tree members and two before everyone.
    shown = await card(9611)
    assert (
        "✨ 您是🌲森林会员，优先购买新品资格已生效："
        f"现在即可兑换（其他会员 {when[GENERAL_AT]} 起）。" in shown
    )
    chat = chats[9611]
    await chat.tap("🎁 兑换")
    await chat.tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, forest) == 450
    # Tree: told when it opens for them, and that forest members have it already.
    shown = await card(9612)
    assert f"✨ 优先购买新品资格：🌲森林及以上会员 {when[FOREST_AT]} 起可兑换。" in shown
    assert (
        f"✨ 您是🌳绿树会员，享优先购买新品资格：{when[TREE_AT]} 起即可兑换"
        f"（其他会员 {when[GENERAL_AT]} 起）。" in shown
    )
    assert "🎁 兑换" not in chats[9612].buttons()
    last = chats[9612].last_message
    assert last is not None
    await chats[9612].tap_data(last.message_id, "mall:buy:NEW-FLASK", expect=0)
    assert chats[9612].last_callback_answer == "该商品尚未开始兑换。"
    # Sprout: the general opening, and both tiers' earlier moments.
    shown = await card(9613)
    assert f"⏳ 您可在 {when[GENERAL_AT]} 起兑换。" in shown
    assert f"🌳绿树及以上会员 {when[TREE_AT]} 起可兑换" in shown
    # Tree's moment: tree members redeem, sprout members still wait.
    sandbox.services.clock = FixedClock(TREE_AT)
    await card(9612)
    await chats[9612].tap("🎁 兑换")
    await chats[9612].tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, tree) == 450
    await card(9613)
    assert "🎁 兑换" not in chats[9613].buttons()
    # The general opening: everyone, with no early-access lines left.
    sandbox.services.clock = FixedClock(GENERAL_AT)
    shown = await card(9613)
    assert "优先购买" not in shown
    await chats[9613].tap("🎁 兑换")
    await chats[9613].tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, sprout) == 450


# --- the bill-deduction rate -----------------------------------------------------------------


async def buy(sandbox: Sandbox, member: Member, amount: str, receipt: str) -> None:
    result = await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        "general",
        receipt,
        purchased_at=sandbox.services.clock(),
        actor="till:test",
    )
    assert result.status == "recorded"


async def test_a_forest_member_deducts_at_the_tier_rate(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9621, 0)
    await buy(sandbox, member, "20000", "B1")  # straight into forest at the till
    assert await sandbox.services.tiers.held_one(member.id) == "forest"
    before = await available(sandbox, member)
    chat = sandbox.member(9621)
    await chat.send("/mall")
    await chat.tap("优惠券与抵扣")
    assert "积分抵现 · 90 积分/元" in chat.buttons()
    await chat.tap("积分抵现")
    assert "🌲森林会员抵扣价：90 积分抵 1 元（标准为 100 积分抵 1 元）。" in (chat.last_text or "")
    await chat.tap("抵 10 元")
    quote = (chat.last_text or "").splitlines()
    assert quote[:3] == [
        "请确认兑换：积分抵现（10 元）",
        "所需积分：900",
        "抵扣比例：90 积分抵 1 元（🌲森林会员价，标准为 100 积分抵 1 元），比标准少用 100 积分",
    ]
    await chat.tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, member) == before - 900


async def test_the_deduction_quote_in_english(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9622, 2000, lang="en")
    await hold(sandbox, member, "forest")
    chat = sandbox.member(9622, language_code="en")
    await chat.send("/mall")
    await chat.tap("Vouchers")
    await chat.tap("Points off your bill")
    await chat.tap("¥10 off")
    assert (
        "Rate: 90 points per yuan (🌲 Forest member rate; standard 100), 100 points fewer than"
        " at the standard rate"
    ) in (chat.last_text or "")


async def test_a_lower_tier_deducts_at_the_standard_rate(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9623, 2000)
    await hold(sandbox, member, "tree")
    chat = sandbox.member(9623)
    await chat.send("/mall")
    await chat.tap("优惠券与抵扣")
    await chat.tap("积分抵现")
    assert "会员抵扣价" not in (chat.last_text or "")
    await chat.tap("抵 10 元")
    quote = (chat.last_text or "").splitlines()
    assert quote[1:3] == ["所需积分：1000", "抵扣比例：100 积分抵 1 元"]
    await chat.tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, member) == 1000


async def test_a_tier_changed_between_quote_and_confirm_is_requoted(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9624, 2000)
    await hold(sandbox, member, "forest")
    chat = sandbox.member(9624)
    await chat.send("/mall")
    await chat.tap("优惠券与抵扣")
    await chat.tap("积分抵现")
    await chat.tap("抵 10 元")
    assert "所需积分：900" in (chat.last_text or "")
    await hold(sandbox, member, "tree")  # the yearly review, between the quote and the tap
    await chat.tap("✅ 确认兑换")
    assert chat.last_callback_answer == (
        "价格已变动：此确认按 900 积分，现价为 1000 积分。未扣积分，请查看新价格后再兑换。"
    )
    assert await available(sandbox, member) == 2000  # never booked at a price not shown


# --- wheel spins ------------------------------------------------------------------------------


async def test_a_tree_member_has_an_extra_free_spin_and_is_told(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9631, 200)
    await hold(sandbox, member, "tree")
    sandbox.services.game_random = ForcedDraws(THANKS, THANKS, THANKS)
    chat = sandbox.member(9631)
    [home] = await chat.send("/wheel")
    assert "今天还有 2 次免费机会（🌳绿树会员每天共 2 次免费，其中 1 次为会员等级额外赠送）。" in (
        home.text or ""
    )
    await chat.tap("免费转一次", expect=2)
    await chat.tap("免费转一次", expect=2)
    assert await available(sandbox, member) == 200  # both free
    await chat.tap("转一次（50 积分）", expect=2)
    assert await available(sandbox, member) == 150


async def test_a_sprout_member_has_the_standard_free_spin(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9632, 200)
    sandbox.services.game_random = ForcedDraws(THANKS, THANKS)
    chat = sandbox.member(9632)
    [home] = await chat.send("/wheel")
    assert "今天还有 1 次免费机会。" in (home.text or "")
    assert "会员等级额外" not in (home.text or "")
    await chat.tap("免费转一次", expect=2)
    await chat.tap("转一次（50 积分）", expect=2)
    assert await available(sandbox, member) == 150


async def test_a_spin_quoted_free_for_a_tier_lost_before_the_tap_is_not_free(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 9633, 200)
    await hold(sandbox, member, "tree")
    sandbox.services.game_random = ForcedDraws(THANKS, THANKS)
    chat = sandbox.member(9633)
    await chat.send("/wheel")
    await chat.tap("免费转一次", expect=2)
    assert "免费转一次" in " ".join(chat.buttons())  # the tree member's second free spin
    await hold(sandbox, member, "sprout")
    await chat.tap("免费转一次", expect=0)
    assert await available(sandbox, member) == 200  # nothing charged at a price not shown


# --- birthdays --------------------------------------------------------------------------------


async def test_the_birthday_gift_of_the_members_tier(sandbox: Sandbox) -> None:
    tree = await member_with(sandbox, 9641, 0)
    sprout = await member_with(sandbox, 9642, 0)
    await hold(sandbox, tree, "tree")
    entered = datetime(2026, 1, 1, tzinfo=UTC)
    for user_id in (9641, 9642):
        await sandbox.services.pushes.set_birthday(
            user_id, 3, 15, None, now=entered, change_allowed_after=entered - timedelta(days=365)
        )
    day = datetime(2027, 3, 15, 9, tzinfo=sandbox.config.program.tz)
    report = await sandbox.services.scheduler.daily(day)
    assert (report.birthdays, report.gifts) == (2, 2)
    await sandbox.services.sender.drain()
    assert await available(sandbox, tree) == 188
    assert await available(sandbox, sprout) == 88

    def texts(user_id: int) -> list[str]:
        return [m.text or "" for m in sandbox.emu.messages(user_id) if m.from_bot]

    assert (
        "🎂 生日快乐！作为🌳绿树会员，送您 188 积分生日礼（比标准生日礼多 100 积分），已存入账户。"
        in texts(9641)
    )
    assert "🎂 生日快乐！送您 88 积分生日礼，已存入账户。" in texts(9642)
    # The job again the same day: nothing more given or said.
    await sandbox.services.scheduler.daily(day + timedelta(hours=3))
    await sandbox.services.sender.drain()
    assert await available(sandbox, tree) == 188
    assert sum("生日快乐" in t for t in texts(9641)) == 1


# --- /rules -----------------------------------------------------------------------------------


async def test_the_rules_say_what_tiers_change(sandbox: Sandbox) -> None:
    chat = sandbox.member(9651)
    await chat.send("/start")
    await chat.send("/rules")
    rules = "\n".join(m.text or "" for m in chat.bot_messages)
    assert (
        "• 会员等级生日礼（积分）：🍃绿叶 128、🌳绿树 188、🌲森林 288；其他等级按上述标准赠送。"
        in rules
    )
    assert "• 会员等级抵扣价（多少积分抵 1 元）：🌲森林 90；其他等级按上述标准。" in rules
    assert "会员等级每天额外免费次数：🌳绿树 1、🌲森林 2。" in rules


async def test_settings_promise_the_gift_of_the_members_tier(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9643, 0)
    await hold(sandbox, member, "forest")
    chat = sandbox.member(9643)
    await chat.send("/settings")
    await chat.tap("🎂 设置生日")
    [saved] = await chat.send("1990-05-20")
    assert saved.text == "🎂 已保存生日：5 月 20 日。\n生日当天您将收到 288 积分生日礼。"


async def test_the_rules_name_tier_only_items_and_early_access(sandbox: Sandbox) -> None:
    chat = sandbox.member(9652, language_code="en")
    await chat.send("/start")
    await chat.send("/rules", expect=2)
    rules = "\n".join(m.text or "" for m in chat.bot_messages)
    tz = sandbox.config.program.tz
    tree_at = TREE_AT.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    general = GENERAL_AT.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    assert "• “Members' gift box” is only for 🌳 Tree members and above." in rules
    assert (
        f"• Early access: 🌳 Tree members and above can redeem “New flask” from {tree_at},"
        f" other members from {general}."
    ) in rules


async def test_a_personal_plans_priority_item_opens_a_tier_only_item(sandbox: Sandbox) -> None:
    """A key customer's plan naming a tier-only item lets them redeem it below the tier, for
    as long as the plan runs; the confirmation re-reads the plan."""
    member = await member_with(sandbox, 9611, 1000)
    now = sandbox.services.clock()
    terms = PlanTerms(
        categories=(),
        multiplier=Decimal("1"),
        starts_on=(now - timedelta(days=1)).date(),
        ends_on=(now + timedelta(days=30)).date(),
        from_at=now - timedelta(days=1),
        until_at=now + timedelta(days=30),
        gift_threshold_fen=None,
        gift_points=None,
        skus=("TREE-BOX",),
        advisor_id=None,
        advisor_contact=None,
    )
    await sandbox.services.store.write(
        lambda conn: add_plan(conn, member.id, terms, actor="staff:test", reason="VIP", now=now)
    )
    chat = sandbox.member(9611)
    await chat.send("/mall")
    await chat.tap("环保家居")
    await chat.tap("会员礼盒")
    assert "🎁 兑换" in chat.buttons()
    await chat.tap("🎁 兑换")
    await chat.tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, member) == 900
    # Ended between the quote and the tap: the confirmation reads the plan again, refuses.
    await chat.send("/mall")
    await chat.tap("环保家居")
    await chat.tap("会员礼盒")
    await chat.tap("🎁 兑换")
    await sandbox.services.store.write(
        lambda conn: end_plan(conn, member.id, actor="staff:test", reason="ended", now=now)
    )
    await chat.tap("✅ 确认兑换", expect=0)
    assert (chat.last_callback_answer or "").startswith("抱歉，这件商品仅限🌳绿树及以上会员兑换。")
    assert await available(sandbox, member) == 900
