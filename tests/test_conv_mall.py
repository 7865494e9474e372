"""The points mall through the sandbox: browse, redeem, confirm, return, and the operators' side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from bot.config import Config, MallDiscount, MallItem
from bot.programme.mall import catalog_entries, sale_window
from bot.sandbox.client import ChatClient
from storage.errors import CatalogPriceChanged
from tests.conftest import NOW, SEED_EXPIRY, Sandbox, assert_audit_ok, available, member_with


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did through the bot, the ledger and the mall must still add up."""
    yield
    await assert_audit_ok(sandbox)


async def open_item(chat: ChatClient, shelf: str, item: str) -> None:
    """/mall → a shelf → an item card."""
    await chat.send("/mall")
    await chat.tap(shelf)
    await chat.tap(item)


async def test_browse_redeem_and_confirm(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9101, 1000)
    chat = sandbox.member(9101)
    [home] = await chat.send("/mall")
    assert home.text == "🛍 积分商城\n您有 1000 积分可用。请选择分类："
    assert home.buttons == ["环保家居", "优惠券与抵扣", "合作门店服务", "🎫 我的兑换"]
    await chat.tap("环保家居")
    assert chat.buttons()[:2] == ["帆布环保购物袋 · 300 积分", "不锈钢随行杯 · 1200 积分"]
    await chat.tap("帆布环保购物袋")
    card = chat.last_text or ""
    assert "所需积分：300" in card and "库存：剩余 200 件" in card and "每人限兑 2 件" in card
    await chat.tap("🎁 兑换")
    confirmation = chat.last_text or ""
    day = (SEED_EXPIRY.astimezone(sandbox.config.program.tz) - timedelta(microseconds=1)).date()
    assert confirmation.splitlines()[:4] == [
        "请确认兑换：帆布环保购物袋",
        "所需积分：300",
        f"• 将使用 300 积分（{day.isoformat()} 到期）",
        "兑换后剩余：700 积分",
    ]
    assert await available(sandbox, member) == 1000  # nothing is spent before Confirm
    replies = await chat.tap("✅ 确认兑换", expect=2)
    done = chat.emu.message(9101, replies[0].message_id)
    assert done is not None and (done.text or "").startswith("✅ 兑换成功：帆布环保购物袋\n券码：")
    photo = [r for r in replies if r.kind == "photo"]
    assert photo and photo[0].photo is not None and photo[0].photo.startswith(b"\x89PNG")
    assert await available(sandbox, member) == 700
    [listing] = await chat.send("/redemptions")
    assert "帆布环保购物袋  300 积分" in (listing.text or "") and "待使用" in (listing.text or "")
    state = await sandbox.services.mall.item("BAG-01")
    assert state.sold == 1 and state.left == 199
    await assert_audit_ok(sandbox)


async def test_cancel_changes_nothing(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9102, 1000)
    chat = sandbox.member(9102)
    await open_item(chat, "环保家居", "帆布环保购物袋")
    await chat.tap("🎁 兑换")
    await chat.tap("取消")
    assert chat.last_text == "已取消，积分没有变动。"
    assert await available(sandbox, member) == 1000
    assert (await sandbox.services.mall.item("BAG-01")).sold == 0


async def test_insufficient_points_names_the_shortfall(sandbox: Sandbox) -> None:
    await member_with(sandbox, 9103, 250, "en")
    chat = sandbox.member(9103, language_code="en")
    await open_item(chat, "Green home", "Canvas shopping bag")
    await chat.tap("🎁 Redeem")
    assert chat.last_text == (
        "Not enough points: this costs 300 points, you have 250, so you are 50 short."
    )


async def test_sold_out(sandbox: Sandbox) -> None:
    await member_with(sandbox, 9104, 5000)
    [ok] = await sandbox.admin().send("/stock BAG-01 0")
    assert ok.text == "✅ BAG-01 剩余库存已设为 0（已兑换 0）。"
    chat = sandbox.member(9104)
    await open_item(chat, "环保家居", "帆布环保购物袋")
    assert "抱歉，该商品已兑完。" in (chat.last_text or "")
    assert "🎁 兑换" not in chat.buttons()


async def test_per_member_limit(sandbox: Sandbox) -> None:
    await member_with(sandbox, 9105, 5000)
    chat = sandbox.member(9105)
    await open_item(chat, "环保家居", "不锈钢随行杯")
    await chat.tap("🎁 兑换")
    await chat.tap("✅ 确认兑换", expect=2)
    await open_item(chat, "环保家居", "不锈钢随行杯")
    await chat.tap("🎁 兑换", expect=0)
    assert chat.last_callback_answer == "该商品每人限兑 1 件，您已达到上限。"


def future_item(config: Config) -> Config:
    """An item whose availability window opens tomorrow."""
    start = NOW + timedelta(days=1)
    item = MallItem.model_validate(
        {
            "sku": "SOON-01",
            "name": {"zh-CN": "新品预告", "en": "Coming soon"},
            "description": {"zh-CN": "明天开始兑换。", "en": "From tomorrow."},
            "category": "home",
            "kind": "goods",
            "price": 10,
            "available_from": start,
        }
    )
    mall = config.mall.model_copy(update={"items": [*config.mall.items, item]})
    return config.model_copy(update={"mall": mall})


@pytest.mark.parametrize("configure", [[future_item]])
async def test_outside_the_availability_window(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    member = await member_with(sandbox, 9106, 100)
    chat = sandbox.member(9106)
    await open_item(chat, "环保家居", "新品预告")
    assert "该商品尚未开始兑换。" in (chat.last_text or "")
    assert "🎁 兑换" not in chat.buttons()
    # A forged Redeem tap is refused by the store's own window check.
    last = chat.last_message
    assert last is not None
    await chat.tap_data(last.message_id, "mall:buy:SOON-01", expect=0)
    assert chat.last_callback_answer == "该商品尚未开始兑换。"
    assert await available(sandbox, member) == 100


async def test_a_double_tap_on_confirm_redeems_once(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9107, 1000)
    chat = sandbox.member(9107)
    await open_item(chat, "优惠券与抵扣", "满 100 减 10 元券")
    await chat.tap("🎁 兑换")
    confirmation = chat.last_message
    assert confirmation is not None
    [button] = [b for row in confirmation.keyboard for b in row if b.text == "✅ 确认兑换"]
    assert button.callback_data is not None
    # Two taps land before the first answer: both carry the same offer.
    first, second = await asyncio.gather(
        chat.tap_data(confirmation.message_id, button.callback_data, expect=0),
        chat.tap_data(confirmation.message_id, button.callback_data, expect=0),
    )
    found, total = await sandbox.services.mall.redemptions(member.id)
    assert total == 1
    assert await available(sandbox, member) == 200
    await assert_audit_ok(sandbox)


async def test_fifty_members_race_for_ten_units(sandbox: Sandbox) -> None:
    await sandbox.admin().send("/stock BOTTLE-01 10")
    chats = []
    for i in range(50):
        user_id = 9200 + i
        await member_with(sandbox, user_id, 1200)
        chat = sandbox.member(user_id)
        await open_item(chat, "环保家居", "不锈钢随行杯")
        await chat.tap("🎁 兑换")
        chats.append(chat)

    async def confirm(chat: ChatClient) -> None:
        message = chat.last_message
        assert message is not None
        [button] = [b for row in message.keyboard for b in row if b.text == "✅ 确认兑换"]
        assert button.callback_data is not None
        await chat.tap_data(message.message_id, button.callback_data, expect=0, timeout=30)

    await asyncio.gather(*(confirm(chat) for chat in chats))

    def won(chat: ChatClient) -> bool:
        return any((m.text or "").startswith("✅ 兑换成功") for m in chat.bot_messages)

    def settled(chat: ChatClient) -> bool:
        return won(chat) or chat.last_callback_answer == "抱歉，该商品已兑完。"

    for chat in chats:  # a winner's answer comes first, the edited message right after it
        await chat.emu.wait_for(chat.user_id, lambda c=chat: settled(c), 10)
    state = await sandbox.services.mall.item("BOTTLE-01")
    assert (state.sold, state.left) == (10, 0)
    winners = [c for c in chats if won(c)]
    losers = [c for c in chats if c.last_callback_answer == "抱歉，该商品已兑完。"]
    assert (len(winners), len(losers)) == (10, 40)
    await assert_audit_ok(sandbox)


async def test_forged_and_stale_buttons_change_nothing(sandbox: Sandbox) -> None:
    owner = await member_with(sandbox, 9301, 1000)
    snoop = await member_with(sandbox, 9302, 1000)
    owner_chat, snoop_chat = sandbox.member(9301), sandbox.member(9302)
    await open_item(owner_chat, "环保家居", "帆布环保购物袋")
    await owner_chat.tap("🎁 兑换")
    owner_confirmation = owner_chat.last_message
    assert owner_confirmation is not None
    [button] = [b for row in owner_confirmation.keyboard for b in row if b.text == "✅ 确认兑换"]
    [home] = await snoop_chat.send("/mall")
    for forged in (
        str(button.callback_data),  # someone else's offer
        "mall:item:NOPE",
        "mall:buy:NOPE",
        "mall:cat:toys:0",
        "mall:cat:home:999",
        "mall:ok:999999",
        "mall:ok:-1",
        "mall:deduct:BILL-OFF:100000",
        "mall:deduct:BAG-01:5",
        "mall:ok",
        "red:rety:ZZZZZZZZ",
        "red:list:x",
    ):
        await snoop_chat.tap_data(home.message_id, forged, expect=0)
        assert snoop_chat.last_callback_answer is not None, forged
        assert snoop_chat.last_callback_answer != "", forged
    assert await available(sandbox, owner) == 1000
    assert await available(sandbox, snoop) == 1000
    # An old confirmation: its offer has lapsed.
    stale = await sandbox.services.mall.create_offer(
        owner.id,
        "BAG-01",
        300,
        now=NOW - timedelta(hours=1),
        ttl=timedelta(minutes=10),
    )
    await owner_chat.tap_data(owner_confirmation.message_id, f"mall:ok:{stale.id}", expect=0)
    assert owner_chat.last_callback_answer == "此按钮已失效，请重新操作。"
    assert await available(sandbox, owner) == 1000


async def test_bill_deduction_amounts_within_bounds(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9401, 2000, "en")
    chat = sandbox.member(9401, language_code="en")
    await open_item(chat, "Vouchers and bill deduction", "Points off your bill")
    assert chat.buttons()[:6] == [
        "¥1 off",
        "¥5 off",
        "¥10 off",
        "¥20 off",
        "¥50 off",
        "⬅ Back to the list",
    ]
    await chat.tap("¥10 off")
    assert (chat.last_text or "").startswith(
        "Please confirm: Points off your bill (¥10)\nPrice: 1000 points"
    )
    await chat.tap("✅ Confirm", expect=2)
    assert await available(sandbox, member) == 1000
    last = chat.last_message
    assert last is not None
    await chat.tap_data(last.message_id, "mall:deduct:BILL-OFF:51", expect=0)
    assert chat.last_callback_answer == "A bill deduction must be between 1 and 50 yuan (got 51)."


# Returns, cancellations and /cannot_fulfil: tests/test_conv_returns.py.


async def test_delisting_refunds_and_compensates_open_redemptions(sandbox: Sandbox) -> None:
    members = [await member_with(sandbox, 9600 + i, 1500) for i in range(3)]
    for i in range(3):
        chat = sandbox.member(9600 + i)
        await open_item(chat, "合作门店服务", "合作门店洗车一次")
        await chat.tap("🎁 兑换")
        await chat.tap("✅ 确认兑换", expect=2)
    # One of them already used theirs: that one is not refunded.
    [used_listing] = await sandbox.member(9602).send("/redemptions")
    code = (used_listing.text or "").splitlines()[1].split()[0]
    await sandbox.admin().send(f"/fulfil {code}")
    [done] = await sandbox.admin().send("/delist CARWASH-01 合作门店停业")
    assert done.text == "✅ CARWASH-01 已下架；2 笔未完成的兑换已退回积分，共补偿 300 积分。"
    for i in range(2):
        chat = sandbox.member(9600 + i)
        await chat.emu.wait_for(9600 + i, lambda c=chat: "已下架" in (c.last_text or ""), 5)
        assert "1500 积分已退回，另补偿 150 积分" in (chat.last_text or "")
        assert await available(sandbox, members[i]) == 1650
    assert await available(sandbox, members[2]) == 0
    [again] = await sandbox.admin().send("/delist CARWASH-01 合作门店停业")
    assert "0 笔未完成的兑换" in (again.text or "")
    [home] = await sandbox.member(9600).send("/mall")
    assert "合作门店服务" not in home.buttons
    await assert_audit_ok(sandbox)


async def test_operators_only(sandbox: Sandbox) -> None:
    await member_with(sandbox, 9701, 0)
    chat = sandbox.member(9701)
    for command in (
        "/fulfil ABCDEFGH",
        "/stock BAG-01 5",
        "/delist BAG-01 x",
        "/approve_return A",
        "/reject_return A b",
    ):
        [reply] = await chat.send(command)
        assert reply.text == "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"
    assert (await sandbox.services.mall.item("BAG-01")).left == 200


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("/fulfil", "用法：/fulfil <券码>"),
        ("/fulfil ZZZZZZZZ", "找不到券码 ZZZZZZZZ。"),
        ("/stock BAG-01", "用法：/stock"),
        ("/stock BAG-01 -3", "数量「-3」无效"),
        ("/stock NOPE 3", "找不到商品 NOPE。"),
        ("/delist BAG-01", "用法：/delist"),
        ("/delist NOPE reason", "找不到商品 NOPE。"),
        ("/reject_return ZZZZZZZZ", "用法：/reject_return"),
    ],
)
async def test_bad_operator_input(sandbox: Sandbox, command: str, answer: str) -> None:
    [reply] = await sandbox.admin().send(command)
    assert answer in (reply.text or "")


def sale_today(config: Config) -> Config:
    """A 20% sale on the home shelf running today."""
    today = NOW.astimezone(config.program.tz).date()
    sale = MallDiscount.model_validate(
        {
            "id": "today",
            "name": {"zh-CN": "今日特惠", "en": "Today's sale"},
            "starts": today,
            "ends": today,
            "percent": 20,
            "categories": ["home"],
        }
    )
    return config.model_copy(update={"mall": config.mall.model_copy(update={"discounts": [sale]})})


@pytest.mark.parametrize("configure", [[sale_today]])
async def test_a_sale_is_shown_in_the_list_card_confirmation_and_rules(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    member = await member_with(sandbox, 9801, 1000)
    chat = sandbox.member(9801)
    await chat.send("/mall")
    await chat.tap("环保家居")
    assert "帆布环保购物袋 · 240 积分 · 8 折" in chat.buttons()
    await chat.tap("帆布环保购物袋")
    assert "🎉 今日特惠：8 折（原价 300 积分" in (chat.last_text or "")
    await chat.tap("🎁 兑换")
    assert "🎉 已按「今日特惠」8 折" in (chat.last_text or "")
    await chat.tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, member) == 760
    # Long rules arrive in several messages, cut between sections.
    rules = "\n".join(reply.text or "" for reply in await chat.send("/rules"))
    assert "积分商城活动「今日特惠」" in rules and "环保家居兑换享 8 折" in rules


PRICE_CHANGED = "价格已变动：此确认按 {} 积分，现价为 {} 积分。未扣积分，请查看新价格后再兑换。"


async def nothing_redeemed(sandbox: Sandbox, member_id: int) -> bool:
    """No redemption for the member and no unit of the bag taken."""
    _found, total = await sandbox.services.mall.redemptions(member_id)
    return total == 0 and (await sandbox.services.mall.item("BAG-01")).sold == 0


@pytest.mark.parametrize("configure", [[sale_today]])
async def test_a_sale_that_ends_before_confirm_is_refused_and_charges_nothing(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    member = await member_with(sandbox, 9802, 1000)
    [sale] = sandbox.config.mall.discounts
    _starts, ends = sale_window(sale, sandbox.config)  # the local midnight after its last day
    sandbox.services.clock = lambda: ends - timedelta(minutes=3)
    chat = sandbox.member(9802)
    await open_item(chat, "环保家居", "帆布环保购物袋")
    await chat.tap("🎁 兑换")
    assert "所需积分：240" in (chat.last_text or "")
    # Midnight passes while the confirmation is on screen; the offer itself is still valid.
    sandbox.services.clock = lambda: ends + timedelta(minutes=1)
    await chat.tap("✅ 确认兑换")
    assert chat.last_callback_answer == PRICE_CHANGED.format(240, 300)
    assert chat.last_text == PRICE_CHANGED.format(240, 300)
    assert await available(sandbox, member) == 1000
    assert await nothing_redeemed(sandbox, member.id)
    await chat.tap("🔄 查看新价格")
    assert "所需积分：300" in (chat.last_text or "") and "今日特惠" not in (chat.last_text or "")
    await chat.tap("🎁 兑换")
    await chat.tap("✅ 确认兑换", expect=2)
    assert await available(sandbox, member) == 700
    await assert_audit_ok(sandbox)


def dearer_bag(config: Config) -> Config:
    """The operator raised the canvas bag from 300 to 350 points."""
    items = [
        item.model_copy(update={"price": 350}) if item.sku == "BAG-01" else item
        for item in config.mall.items
    ]
    return config.model_copy(update={"mall": config.mall.model_copy(update={"items": items})})


async def test_a_price_changed_by_a_reload_is_refused_and_charges_nothing(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 9803, 1000, "en")
    chat = sandbox.member(9803, language_code="en")
    await open_item(chat, "Green home", "Canvas shopping bag")
    await chat.tap("🎁 Redeem")
    # The operator changes the price and reloads while the confirmation is on screen.
    reloaded = dearer_bag(sandbox.services.config)
    await sandbox.services.mall.sync_catalog(catalog_entries(reloaded), NOW)
    sandbox.services.config = reloaded
    await chat.tap("✅ Confirm")
    assert chat.last_callback_answer == (
        "The price has changed: this confirmation said 300 points, it now costs 350."
        " Nothing was charged; please look at the new price and redeem again."
    )
    assert await available(sandbox, member) == 1000
    assert await nothing_redeemed(sandbox, member.id)
    await chat.tap("🔄 See the new price")
    await chat.tap("🎁 Redeem")
    await chat.tap("✅ Confirm", expect=2)
    assert await available(sandbox, member) == 650


async def test_a_forged_offer_price_is_refused_and_charges_nothing(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9804, 1000)
    with pytest.raises(CatalogPriceChanged):
        await sandbox.services.mall.create_offer(
            member.id, "BAG-01", 1, now=NOW, ttl=timedelta(minutes=10)
        )
    # An offer tampered with in the database: the redeeming transaction still refuses it.
    created, expires = int(NOW.timestamp()), int((NOW + timedelta(minutes=10)).timestamp())
    forged = await sandbox.services.store.write(
        lambda conn: (
            conn.execute(
                "INSERT INTO offers (member_id, sku, points, created_at, expires_at)"
                " VALUES (?, 'BAG-01', 1, ?, ?)",
                (member.id, created, expires),
            ).lastrowid
        )
    )
    chat = sandbox.member(9804)
    [home] = await chat.send("/mall")
    await chat.tap_data(home.message_id, f"mall:ok:{forged}")
    assert chat.last_callback_answer == PRICE_CHANGED.format(1, 300)
    assert await available(sandbox, member) == 1000
    assert await nothing_redeemed(sandbox, member.id)
