"""Returns as /rules says them, through the sandbox in both languages: a member cancels what
they have not collected (points back at once, no visit), returns picked-up goods with a reason
that staff approve or reject from buttons or /returns, and staff cancel an order they cannot
honour (/cannot_fulfil) with the merchant-fault refund."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from bot.config import Config
from bot.programme.expiry import expires_at
from bot.programme.mall import RETURNS, return_terms
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotEvent, SandboxMessage
from storage.mall import Redemption
from storage.members import Member
from tests.conftest import (
    ADMIN_ID,
    NOW,
    SEED_EXPIRY,
    Sandbox,
    assert_audit_ok,
    available,
    member_with,
)

SECOND_ADMIN = 100000002  # the sample programme's manager, who handles returns too
LANGS = ("zh-hans", "en")
# What each language shows, by what it is.
TEXT = {
    "zh-hans": {
        "bag": "帆布环保购物袋",
        "voucher": "满 100 减 10 元券",
        "cancel": "取消兑换 {code}",
        "return": "申请退货 {code}",
        "cancel_yes": "确定取消",
        "wrong_item": "拿错了商品",
        "damaged": "商品损坏或有质量问题",
        "incomplete": "商品或配件不全",
        "returned": "已退回",
        "refused": "退货未通过",
        "reasons": [
            "商品损坏或有质量问题",
            "拿错了商品",
            "与描述不符",
            "不想要了",
            "其他原因（到店说明）",
            "再想想",
        ],
    },
    "en": {
        "bag": "Canvas shopping bag",
        "voucher": "¥10 off ¥100 voucher",
        "cancel": "Cancel {code}",
        "return": "Return {code}",
        "cancel_yes": "Yes, cancel it",
        "wrong_item": "Wrong item",
        "damaged": "Damaged or faulty",
        "incomplete": "Parts or accessories are missing",
        "returned": "returned",
        "refused": "return refused",
        "reasons": [
            "Damaged or faulty",
            "Wrong item",
            "Not as described",
            "Changed my mind",
            "Other (tell us in the store)",
            "Not now",
        ],
    },
}


# The list always ends with its way to the mall (issue 16 item 9); what matters here is that
# no cancel or return button is offered.
TO_MALL = frozenset(
    {"🛍 去积分商城", "🛍 Go to the points mall", "◀ 返回积分商城", "◀ Back to the mall"}
)


def no_item_buttons(reply: BotEvent) -> bool:
    """True when the reply offers nothing but the way to the mall."""
    return all(label in TO_MALL for label in reply.buttons)


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did through the bot, the ledger and the mall must still add up."""
    yield
    await assert_audit_ok(sandbox)


async def redeemed(
    sandbox: Sandbox, member: Member, sku: str = "BAG-01", points: int = 300, at: datetime = NOW
) -> Redemption:
    """The member redeemed `sku` at `at` (as the mall's Confirm does)."""
    mall = sandbox.services.mall
    offer = await mall.create_offer(member.id, sku, points, now=at, ttl=timedelta(minutes=10))
    return await mall.redeem(offer.id, member.id, now=at, actor=f"member:{member.id}")


async def picked_up(sandbox: Sandbox, code: str) -> None:
    """The cashier hands the goods over (/fulfil)."""
    [done] = await sandbox.admin().send(f"/fulfil {code}")
    assert code in (done.text or "")


async def pushed(chat: ChatClient, user_id: int, fragment: str) -> str:
    """Wait for the outbox to deliver a message containing `fragment`; its text."""
    found: list[str] = []

    def arrived() -> bool:
        found[:] = [m.text or "" for m in chat.emu.messages(user_id) if fragment in (m.text or "")]
        return bool(found)

    await chat.emu.wait_for(user_id, arrived, 5)
    return found[-1]


def staff_message(sandbox: Sandbox, user_id: int, code: str) -> SandboxMessage:
    """The latest message an operator got about the return of `code`."""
    return [
        m
        for m in sandbox.emu.messages(user_id)
        if code in (m.text or "") and any(b.callback_data for row in m.keyboard for b in row)
    ][-1]


async def ask_return(chat: ChatClient, lang: str, code: str, reason: str) -> str:
    """/redemptions → Return → a reason; the member's reply."""
    t = TEXT[lang]
    [listing] = await chat.send("/redemptions")
    assert t["cancel"].format(code=code) not in listing.buttons
    await chat.tap(t["return"].format(code=code))
    assert chat.buttons() == t["reasons"]
    await chat.tap(t[reason])
    return chat.last_text or ""


# --- cancelling what was not collected -------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
async def test_cancelling_uncollected_goods_refunds_at_once(sandbox: Sandbox, lang: str) -> None:
    t = TEXT[lang]
    member = await member_with(sandbox, 9801, 1000, lang)
    chat = sandbox.member(9801, language_code=lang)
    bought = await redeemed(sandbox, member)
    assert await available(sandbox, member) == 700
    [listing] = await chat.send("/redemptions")
    await chat.tap(t["cancel"].format(code=bought.code))
    ask = chat.last_text or ""
    if lang == "en":
        assert ask == (
            f"Cancel Canvas shopping bag (code {bought.code})? 300 points come back to you at"
            " once; no need to visit a store."
        )
    else:
        assert ask == (
            f"确定取消 帆布环保购物袋（券码 {bought.code}）吗？"
            "300 积分会立即退回您的账户，无需到店。"
        )
    confirmation = chat.last_message
    assert confirmation is not None
    await chat.tap(t["cancel_yes"])
    done = chat.last_text or ""
    if lang == "en":
        assert done == (
            f"✅ Canvas shopping bag (code {bought.code}) is cancelled: 300 points are back in"
            " your account, no store visit needed. You now have 1000 points."
        )
    else:
        assert done == (
            f"✅ 已取消 帆布环保购物袋（券码 {bought.code}）：300 积分已退回您的账户，无需到店。"
            "现在可用 1000 积分。"
        )
    assert "门店" not in done and "store." not in done.replace("no store visit", "")
    assert await available(sandbox, member) == 1000
    assert (await sandbox.services.mall.item("BAG-01")).left == 200
    # The points keep the expiry they had.
    lots = await sandbox.services.ledger.lots(member.id)
    assert {lot.expires_at for lot in lots if lot.remainder} == {SEED_EXPIRY.replace(microsecond=0)}
    # A double tap or a redelivered update refunds nothing twice.
    await chat.tap_data(confirmation.message_id, f"red:rety:{bought.code}", expect=0)
    assert bought.code in (chat.last_callback_answer or "")
    assert await available(sandbox, member) == 1000
    [again] = await chat.send("/redemptions")
    assert t["returned"] in (again.text or "") and no_item_buttons(again)


@pytest.mark.parametrize("sku", ["VOUCHER-10", "CARWASH-01"])
async def test_an_unused_voucher_or_service_is_cancelled_too(sandbox: Sandbox, sku: str) -> None:
    member = await member_with(sandbox, 9802, 2000)
    price = 800 if sku == "VOUCHER-10" else 1500
    bought = await redeemed(sandbox, member, sku, price)
    chat = sandbox.member(9802)
    await chat.send("/redemptions")
    await chat.tap(f"取消兑换 {bought.code}")
    await chat.tap("确定取消")
    assert f"{price} 积分已退回您的账户，无需到店" in (chat.last_text or "")
    assert await available(sandbox, member) == 2000


# --- returning picked-up goods -----------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
async def test_picked_up_goods_returned_and_approved_by_a_button(
    sandbox: Sandbox, lang: str
) -> None:
    t = TEXT[lang]
    member = await member_with(sandbox, 9811, 1000, lang)
    chat = sandbox.member(9811, language_code=lang)
    first, second = sandbox.admin(), sandbox.member(SECOND_ADMIN, "店长")
    await second.send("/start")  # a bot can only write to someone who started it
    bought = await redeemed(sandbox, member)
    await picked_up(sandbox, bought.code)
    reply = await ask_return(chat, lang, bought.code, "wrong_item")
    if lang == "en":
        assert reply == (
            f"📦 Return requested: Canvas shopping bag (code {bought.code}), reason: Wrong item.\n"
            "Please bring the item to a store; once staff have checked it, 300 points come back"
            " and we will tell you."
        )
    else:
        assert reply == (
            f"📦 已提交退货申请：帆布环保购物袋（券码 {bought.code}），原因：拿错了商品。\n"
            "请把商品带到门店，店员验收通过后会退回 300 积分，结果会通知您。"
        )
    assert await available(sandbox, member) == 700  # nothing back before staff check the goods
    # Every operator gets the request with Approve / Reject, in their language.
    for admin in (ADMIN_ID, SECOND_ADMIN):
        await sandbox.emu.wait_for(admin, lambda a=admin: bool(_staff(sandbox, a, bought.code)))
    notice = staff_message(sandbox, ADMIN_ID, bought.code)
    lines = (notice.text or "").splitlines()
    assert lines[0] == "📬 新的退货申请，请验收商品后处理："
    assert lines[1] == f"🔄 帆布环保购物袋（券码 {bought.code}，300 积分）"
    assert lines[3] == "原因：拿错了商品"
    assert lines[4] == f"兑换于 {NOW.astimezone(sandbox.config.program.tz).date()}，申请于 " + (
        NOW.astimezone(sandbox.config.program.tz).strftime("%Y-%m-%d %H:%M")
    )
    assert [b.text for row in notice.keyboard for b in row] == [
        "✅ 验收通过，退回积分",
        "❌ 不予退货",
    ]
    await first.tap("✅ 验收通过，退回积分", message=notice.message_id, expect=0)
    assert first.last_callback_answer == "已确认退货，300 积分已退回，会员会收到通知。"
    decided = sandbox.emu.message(ADMIN_ID, notice.message_id)
    assert decided is not None and "处理结果：已退回" in (decided.text or "")
    assert not decided.keyboard
    told = await pushed(chat, 9811, "accepted" if lang == "en" else "已验收通过")
    if lang == "en":
        assert told == (
            f"✅ Your return of Canvas shopping bag (code {bought.code}) is accepted: 300 points"
            " are back; you now have 1000 points."
        )
    else:
        assert told == (
            f"✅ 您退回的 帆布环保购物袋（券码 {bought.code}）已验收通过，300 积分已退回，"
            "现在可用 1000 积分。"
        )
    assert await available(sandbox, member) == 1000
    # The second operator taps their own, now stale, Approve: told it was already handled.
    theirs = staff_message(sandbox, SECOND_ADMIN, bought.code)
    await second.tap("✅ 验收通过，退回积分", message=theirs.message_id, expect=0)
    assert second.last_callback_answer == "已经处理过了：已退回。"
    await first.tap_data(notice.message_id, f"rv:n:{bought.code}:0", expect=0)
    assert first.last_callback_answer == "已经处理过了：已退回。"
    assert await available(sandbox, member) == 1000
    [listing] = await chat.send("/redemptions")
    assert t["returned"] in (listing.text or "") and no_item_buttons(listing)
    # The old command keeps working and says the same.
    [again] = await first.send(f"/approve_return {bought.code}")
    assert "没有待处理的退货申请" in (again.text or "")


def _staff(sandbox: Sandbox, user_id: int, code: str) -> list[SandboxMessage]:
    return [m for m in sandbox.emu.messages(user_id) if code in (m.text or "") and m.keyboard]


@pytest.mark.parametrize("lang", LANGS)
async def test_a_return_rejected_with_a_reason_the_member_is_told(
    sandbox: Sandbox, lang: str
) -> None:
    t = TEXT[lang]
    member = await member_with(sandbox, 9821, 1000, lang)
    chat = sandbox.member(9821, language_code=lang)
    admin = sandbox.admin()
    bought = await redeemed(sandbox, member)
    await picked_up(sandbox, bought.code)
    await ask_return(chat, lang, bought.code, "damaged")
    await sandbox.emu.wait_for(ADMIN_ID, lambda: bool(_staff(sandbox, ADMIN_ID, bought.code)))
    notice = staff_message(sandbox, ADMIN_ID, bought.code)
    await admin.tap("❌ 不予退货", message=notice.message_id)
    assert chat.emu.message(ADMIN_ID, notice.message_id) is not None
    assert [b.text for row in admin.keyboard(notice.message_id) for b in row] == [
        "商品未退回门店",
        "商品已使用或损坏（非质量问题）",
        "商品或配件不全",
        "⬅ 返回",
    ]
    await admin.tap("⬅ 返回", message=notice.message_id)
    await admin.tap("❌ 不予退货", message=notice.message_id)
    await admin.tap("商品或配件不全", message=notice.message_id)
    assert admin.last_callback_answer == "已驳回退货，会员会收到通知。"
    told = await pushed(chat, 9821, t["incomplete"])
    if lang == "en":
        assert told == (
            f"Your return of Canvas shopping bag (code {bought.code}) was not accepted: Parts or"
            " accessories are missing. No points are refunded; please contact the store with any"
            " questions."
        )
    else:
        assert told == (
            f"您退回 帆布环保购物袋（券码 {bought.code}）的申请未通过：商品或配件不全。"
            "积分不予退回，如有疑问请联系门店。"
        )
    assert await available(sandbox, member) == 700
    [listing] = await chat.send("/redemptions")
    assert t["refused"] in (listing.text or "") and no_item_buttons(listing)
    # Refused once: the member cannot ask again, even with a kept button.
    await chat.tap_data(listing.message_id, f"red:rs:{bought.code}:1", expect=0)
    assert t["refused"] in (chat.last_callback_answer or "")


async def test_a_typed_rejection_keeps_working(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 9822, 1000)
    chat = sandbox.member(9822)
    bought = await redeemed(sandbox, member)
    await picked_up(sandbox, bought.code)
    await ask_return(chat, "zh-hans", bought.code, "damaged")
    [rejected] = await sandbox.admin().send(f"/reject_return {bought.code} 包装已拆封")
    assert rejected.text == f"已驳回 {bought.code} 的退货申请，会员已收到通知。"
    told = await pushed(chat, 9822, "包装已拆封")
    assert "未通过：包装已拆封" in told
    [used] = await sandbox.admin().send(f"/fulfil {bought.code}")
    assert used.text == f"⚠️ {bought.code} 不能核销：当前状态为「已使用」。"


# --- what cannot be returned ----------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
async def test_a_used_voucher_is_not_returnable_and_rules_say_so(
    sandbox: Sandbox, lang: str
) -> None:
    t = TEXT[lang]
    member = await member_with(sandbox, 9831, 1000, lang)
    chat = sandbox.member(9831, language_code=lang)
    bought = await redeemed(sandbox, member, "VOUCHER-10", 800)
    await picked_up(sandbox, bought.code)
    [listing] = await chat.send("/redemptions")
    assert t["voucher"] in (listing.text or "") and no_item_buttons(listing)
    for data in (f"red:ret:{bought.code}", f"red:rs:{bought.code}:0", f"red:rety:{bought.code}"):
        await chat.tap_data(listing.message_id, data, expect=0)
        if lang == "en":
            assert chat.last_callback_answer == (
                "It is “used”, so it cannot be cancelled or returned. See /rules for what can be."
            )
        else:
            assert (
                chat.last_callback_answer
                == "当前状态为「已使用」，不能取消或退货。可退范围见 /rules。"
            )
    assert await available(sandbox, member) == 200
    # Long rules arrive in several messages, cut between sections.
    text = "\n".join(reply.text or "" for reply in await chat.send("/rules"))
    if lang == "en":
        expected = [
            "Returns",
            "• Within 7 days of redeeming, in /redemptions:",
            "  – Not collected or used yet (goods, services, vouchers, bill deductions): cancel"
            " it any time; the points come back at once, no store visit needed;",
            "  – Collected (goods): ask for a return, pick a reason and bring the item to a store;"
            " once staff accept it the points come back; you are told the outcome either way;",
            "  – Used services, vouchers, bill deductions cannot be returned.",
            "• An order cancelled for the merchant's reasons (an item withdrawn, an order we cannot"
            " honour) is refunded in full, and the points returned stay valid for at least 30"
            " days.",
            "• An order cancelled for the merchant's reasons also earns 10% of the points it cost"
            " as compensation.",
        ]
    else:
        expected = [
            "【退货与退回】",
            "• 兑换后 7 天内，可在 /redemptions 办理取消或退货：",
            "  – 尚未领取或使用（实物商品、服务、优惠券、积分抵现）：可随时取消，积分立即原路退回，"
            "无需到店；",
            "  – 已领取（实物商品）：可申请退货，选择原因后把商品带到门店，店员验收通过即退回积分；"
            "结果都会通知您；",
            "  – 已使用的服务、优惠券、积分抵现不能退回。",
            "• 因商家原因（商品下架、无法履约）取消的兑换，积分全额退回，"
            "退回的积分至少 30 天内有效。",
            "• 因商家原因取消的兑换，另补偿所用积分的 10%。",
        ]
    start = text.splitlines().index(expected[0])
    assert text.splitlines()[start : start + len(expected)] == expected


def test_the_rules_follow_the_table_the_buttons_obey(sample_config: Config) -> None:
    terms = return_terms(sample_config)
    assert set(terms.cancel_kinds) == {k for k, (before, _) in RETURNS.items() if before}
    assert set(terms.return_kinds) == {k for k, (_, after) in RETURNS.items() if after}
    assert set(terms.final_kinds) == {k for k, (_, after) in RETURNS.items() if after is None}
    assert terms.return_kinds == ("goods",)


@pytest.mark.parametrize("lang", LANGS)
async def test_no_return_after_the_window(sandbox: Sandbox, lang: str) -> None:
    member = await member_with(sandbox, 9841, 2000, lang)
    chat = sandbox.member(9841, language_code=lang)
    old = NOW - timedelta(days=8)
    collected = await redeemed(sandbox, member, at=old)
    await picked_up(sandbox, collected.code)
    uncollected = await redeemed(sandbox, member, "VOUCHER-10", 800, at=old)
    [listing] = await chat.send("/redemptions")
    assert no_item_buttons(listing)
    deadline = (old + timedelta(days=7)).astimezone(sandbox.config.program.tz).date()
    for data in (
        f"red:ret:{collected.code}",
        f"red:rs:{collected.code}:0",
        f"red:ret:{uncollected.code}",
        f"red:rety:{uncollected.code}",
    ):
        await chat.tap_data(listing.message_id, data, expect=0)
        if lang == "en":
            assert chat.last_callback_answer == (
                f"The return period ended on {deadline}; it can no longer be returned."
            )
        else:
            assert chat.last_callback_answer == f"已超过退货期限（{deadline}），无法退回。"
    assert await available(sandbox, member) == 900


# --- staff: /returns and /cannot_fulfil --------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
async def test_returns_lists_the_pending_ones(sandbox: Sandbox, lang: str) -> None:
    first = await member_with(sandbox, 9851, 1000)
    second = await member_with(sandbox, 9852, 1000)
    admin = sandbox.admin(lang)
    [empty] = await admin.send("/returns")
    assert empty.text == ("No returns are waiting." if lang == "en" else "没有待处理的退货申请。")
    codes = []
    for member, user_id, reason in ((first, 9851, "wrong_item"), (second, 9852, "damaged")):
        bought = await redeemed(sandbox, member)
        await picked_up(sandbox, bought.code)
        await ask_return(sandbox.member(user_id), "zh-hans", bought.code, reason)
        codes.append(bought.code)
    await redeemed(sandbox, first)  # issued: nothing for staff
    replies = await admin.send("/returns", expect=3)
    texts = [r.text or "" for r in replies if r.kind == "message"]
    when = NOW.astimezone(sandbox.config.program.tz).strftime("%Y-%m-%d %H:%M")
    day = NOW.astimezone(sandbox.config.program.tz).date()
    code_of = {9851: first.member_code, 9852: second.member_code}
    if lang == "en":
        assert texts[0] == "🔄 Returns waiting for a decision: 2 (the oldest 2 below)."
        assert texts[1].splitlines() == [
            f"🔄 Canvas shopping bag (code {codes[0]}, 300 points)",
            f"Member: 小明 ({code_of[9851][:4]} {code_of[9851][4:8]} {code_of[9851][8:]})",
            "Reason: Wrong item",
            f"Redeemed {day}, asked {when}",
        ]
        assert "Reason: Damaged or faulty" in texts[2] and codes[1] in texts[2]
    else:
        assert texts[0] == "🔄 待处理的退货申请共 2 笔，以下是最早的 2 笔："
        assert texts[1].splitlines()[:3] == [
            f"🔄 帆布环保购物袋（券码 {codes[0]}，300 积分）",
            f"会员：小明（{code_of[9851][:4]} {code_of[9851][4:8]} {code_of[9851][8:]}）",
            "原因：拿错了商品",
        ]
        assert "原因：商品损坏或有质量问题" in texts[2] and codes[1] in texts[2]
    assert all(len(r.buttons) == 2 for r in replies[1:] if r.kind == "message")
    [refused] = await sandbox.member(9851).send("/returns")
    assert refused.text == "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"


@pytest.mark.parametrize("lang", LANGS)
async def test_cannot_fulfil_refunds_with_compensation_and_min_validity(
    sandbox: Sandbox, lang: str
) -> None:
    member = await member_with(sandbox, 9861, 0, lang)
    soon = NOW + timedelta(days=5)
    await sandbox.services.ledger.earn(
        member.id, 1000, kind="purchase", key="seed:soon", actor="t", expires_at=soon
    )
    chat = sandbox.member(9861, language_code=lang)
    bought = await redeemed(sandbox, member)
    left = (await sandbox.services.mall.item("BAG-01")).left
    admin = sandbox.admin()
    [usage] = await admin.send(f"/cannot_fulfil {bought.code}")
    assert usage.text == "用法：/cannot_fulfil <券码> <原因>"
    [done] = await admin.send(f"/cannot_fulfil {bought.code} 供应商断货")
    assert done.text == (
        f"✅ {bought.code}（帆布环保购物袋）已按无法履约取消：300 积分已退回，另补偿 30 积分，"
        "会员会收到通知。"
    )
    told = await pushed(chat, 9861, "供应商断货")
    if lang == "en":
        assert told == (
            f"We are sorry: we cannot honour your Canvas shopping bag (code {bought.code}):"
            " 供应商断货. All 300 points are back (valid for at least 30 days), plus 30 points"
            " of compensation. You now have 1030 points."
        )
    else:
        assert told == (
            f"很抱歉，我们无法兑现您的 帆布环保购物袋（券码 {bought.code}）：供应商断货。"
            "300 积分已全额退回（至少 30 天内有效），另补偿 30 积分。现在可用 1030 积分。"
        )
    assert await available(sandbox, member) == 1030
    lots = {
        lot.points: lot.expires_at
        for lot in await sandbox.services.ledger.lots(member.id)
        if lot.remainder and lot.expires_at != soon
    }
    # Points that would have expired in 5 days are back for at least 30; the compensation
    # expires like any bonus earned now.
    assert lots == {
        300: (NOW + timedelta(days=30)).replace(microsecond=0),
        30: expires_at(NOW, sandbox.config, "compensation"),
    }
    assert (await sandbox.services.mall.item("BAG-01")).left == left  # the unit is gone
    [twice] = await admin.send(f"/cannot_fulfil {bought.code} 供应商断货")
    assert twice.text == f"⚠️ {bought.code} 不能按无法履约取消：当前状态为「已取消（商家原因）」。"
    collected = await redeemed(sandbox, member)
    await picked_up(sandbox, collected.code)
    [used] = await admin.send(f"/cannot_fulfil {collected.code} 无货")
    assert used.text == f"⚠️ {collected.code} 不能按无法履约取消：当前状态为「已使用」。"
    [listing] = await chat.send("/redemptions")
    label = "cancelled by the store" if lang == "en" else "已取消（商家原因）"
    assert label in (listing.text or "")
    assert await available(sandbox, member) == 730
    [refused] = await chat.send(f"/cannot_fulfil {collected.code} x")
    assert refused.text in (
        "Sorry, your staff role cannot use this. Ask the store's owner if you need it.",
        "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。",
    )


# --- forged, stale and double taps -------------------------------------------------------------


async def test_forged_and_stale_taps_change_nothing(sandbox: Sandbox) -> None:
    owner = await member_with(sandbox, 9871, 1000)
    snoop = await member_with(sandbox, 9872, 1000)
    issued = await redeemed(sandbox, owner)
    collected = await redeemed(sandbox, owner)
    await picked_up(sandbox, collected.code)
    snoop_chat = sandbox.member(9872)
    [home] = await snoop_chat.send("/redemptions")
    for data in (
        f"red:ret:{issued.code}",  # someone else's codes
        f"red:rety:{issued.code}",
        f"red:rs:{collected.code}:0",
        f"red:rs:{collected.code}:9",
        f"red:rs:{collected.code}:x",
        f"red:rs:{collected.code}:0:1",
        f"red:rety:{issued.code}:1",
        "red:rety:ZZZZZZZZ",
        f"rv:a:{collected.code}",  # staff buttons from a member
        f"rv:n:{collected.code}:0",
    ):
        await snoop_chat.tap_data(home.message_id, data, expect=0)
        assert snoop_chat.last_callback_answer in (
            "此按钮已失效，请重新操作。",
            "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。",
        ), data
    owner_chat = sandbox.member(9871)
    await ask_return(owner_chat, "zh-hans", collected.code, "damaged")
    admin = sandbox.admin()
    mine = (await admin.send("/returns", expect=2))[-1]
    for data in (
        "rv:a:ZZZZZZZZ",
        f"rv:n:{collected.code}:7",
        f"rv:x:{collected.code}",
        f"rv:a:{collected.code}:1",
        f"rv:a:{issued.code}",  # no return was ever asked for it
        "rv:a:../../x",
    ):
        await admin.tap_data(mine.message_id, data, expect=0)
        assert admin.last_callback_answer == "此按钮已失效，请重新操作。", data
    assert await available(sandbox, owner) == 400
    assert await available(sandbox, snoop) == 1000
    assert (await sandbox.services.mall.redemption_by_code(collected.code)).status == (
        "return_requested"
    )
    # A member's double tap on a reason files the return once and tells staff once.
    [listing] = await owner_chat.send("/redemptions")
    await owner_chat.tap_data(listing.message_id, f"red:rs:{collected.code}:0", expect=0)
    assert collected.code in (owner_chat.last_callback_answer or "")
    staff = [m for m in sandbox.emu.messages(ADMIN_ID) if "📬" in (m.text or "")]
    assert len(staff) == 1
    await assert_audit_ok(sandbox)
