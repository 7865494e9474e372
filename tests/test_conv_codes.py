"""Codes and categories as people type them, through the sandbox: member codes in groups at the
till and in the CSV import, voucher codes in any case, categories by name, amounts with 元 or ¥;
/cancel with nothing open; the way back to the mall from 我的兑换."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from bot.config import Config
from bot.imports import import_purchases
from bot.sandbox.client import ChatClient
from storage import games as games_store
from storage import mall as mall_store
from storage.errors import NotFound
from storage.members import Member
from storage.store import connect_sync
from tests.conftest import ADMIN_ID, NOW, Sandbox, assert_audit_ok, available, member_with
from tests.games_support import BAG, ForcedDraws, with_wheel


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did through the bot, the ledger and the mall must still add up."""
    yield
    await assert_audit_ok(sandbox)


def grouped(code: str) -> str:
    """A member code as /card prints it."""
    return f"{code[:4]} {code[4:8]} {code[8:]}"


def dashed(code: str) -> str:
    """A member code as a receipt prints it."""
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


def english_admin(sandbox: Sandbox) -> ChatClient:
    """The till, switched to English (after it spoke Chinese earlier in a test)."""
    sandbox.emu.add_user(ADMIN_ID, "店员", language_code="en")
    return sandbox.admin("en")


def wrong_check_digit(code: str) -> str:
    return code[:-1] + str((int(code[-1]) + 1) % 10)


async def test_member_lookup_by_a_code_typed_in_groups(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8101, 0)
    admin = sandbox.admin()
    for typed in (grouped(member.member_code), dashed(member.member_code)):
        [reply] = await admin.send(f"/member {typed}")
        assert (reply.text or "").startswith(f"👤 小明（{grouped(member.member_code)}）")
    english = english_admin(sandbox)
    [reply] = await english.send(f"/member {dashed(member.member_code)}")
    assert (reply.text or "").startswith(f"👤 小明 ({grouped(member.member_code)}), member since ")
    [usage] = await english.send(f"/member {grouped(member.member_code)} extra")
    assert usage.text == "Usage: /member <member code>"


async def test_a_wrong_check_digit_says_so_not_the_length(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8102, 0)
    bad = wrong_check_digit(member.member_code)
    [reply] = await sandbox.admin().send(f"/member {grouped(bad)}")
    assert reply.text == f"会员号有误（校验位不符）：{grouped(bad)}。请核对后重试。"
    [short] = await sandbox.admin().send(f"/member {member.member_code[:9]}")
    assert short.text == f"会员号「{member.member_code[:9]}」不正确：应为 10 位数字，请核对后重试。"
    [chinese] = await sandbox.admin().send("/adjust 会员 +5 补录")
    assert (chinese.text or "").startswith("会员号「会员」不是数字")
    english = english_admin(sandbox)
    [wrong] = await english.send(f"/purchase {grouped(bad)} 100元 eco")
    assert wrong.text == (
        f"The member code is wrong (check digit does not match): {grouped(bad)}."
        " Please check it and try again."
    )
    [letters] = await english.send("/member 1173-48G6-81")
    assert (letters.text or "").startswith("The member code “1173-48G6-81” is not a number")
    assert await available(sandbox, member) == 0


async def test_purchase_with_a_grouped_code_an_amount_in_yuan_and_the_category_in_capitals(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8103, 0)
    code = member.member_code
    [reply] = await sandbox.admin().send(f"/purchase {grouped(code)} 100元 ECO")
    assert reply.text == (
        f"✅ 已为 小明（{grouped(code)}）记录消费 100.00 元（绿色环保商品），"
        "获得 200 积分。当前可用积分：200。"
    )
    [named] = await sandbox.admin().send(f"/purchase {code} ¥100 绿色环保商品 R-8103")
    assert "记录消费 100.00 元（绿色环保商品），获得 200 积分。当前可用积分：400。" in (
        named.text or ""
    )
    [spaced] = await sandbox.admin().send(f"/purchase {dashed(code)} ￥ 50 元 补充装与裸装商品")
    assert "记录消费 50.00 元（补充装与裸装商品），获得 75 积分。" in (spaced.text or "")
    # 475 for the purchases, 30 for the third green purchase this month (the eco_monthly task)
    assert await available(sandbox, member) == 475 + 30


async def test_purchase_in_english_with_the_category_name_and_a_receipt(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8104, 0, "en")
    code = member.member_code
    admin = english_admin(sandbox)
    [reply] = await admin.send(f"/purchase {dashed(code)} 100 元 Eco-friendly products R-8104")
    assert reply.text == (
        f"✅ Recorded a purchase of 100.00 yuan (Eco-friendly products) for 小明 ({grouped(code)}):"
        " 200 points. Available now: 200."
    )
    # The same receipt again, typed with the category's id: booked once.
    [again] = await admin.send(f"/purchase {grouped(code)} 100 eco R-8104")
    assert "R-8104" in (again.text or "") and "200 points" in (again.text or "")
    [unknown] = await admin.send(f"/purchase {grouped(code)} 100 toys R-8105")
    assert unknown.text == (
        "There is no product category “toys”. Categories: Everyday goods (general), "
        "Eco-friendly products (eco), Refills and package-free goods (refill)."
    )
    [usage] = await admin.send(f"/purchase {grouped(code)}")
    assert (usage.text or "").endswith(
        "Categories: Everyday goods (general), Eco-friendly products (eco), "
        "Refills and package-free goods (refill)"
    )
    assert await available(sandbox, member) == 200


async def test_a_short_code_followed_by_an_amount_is_refused_for_its_length(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8105, 0)
    short = grouped(member.member_code)[:-1]  # "1173 4896 8": one digit missing
    [reply] = await sandbox.admin().send(f"/purchase {short} 100 eco")
    assert reply.text == f"会员号「{short}」不正确：应为 10 位数字，请核对后重试。"
    [adjusted] = await english_admin(sandbox).send(f"/adjust {short} -5 wrong")
    assert (adjusted.text or "").startswith(f"The member code “{short}” is not valid")
    assert await available(sandbox, member) == 0


async def test_adjust_with_a_grouped_code(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8106, 100)
    code = member.member_code
    [reply] = await sandbox.admin().send(f"/adjust {grouped(code)} -30 更正")
    assert (reply.text or "").startswith(f"✅ 已为 小明（{grouped(code)}）调整 -30 积分")
    [english] = await english_admin(sandbox).send(f"/adjust {dashed(code)} 5 goodwill")
    assert english.text == (
        f"✅ Adjusted 小明 ({grouped(code)}) by +5 points. Reason: goodwill. Available now: 75."
    )
    assert await available(sandbox, member) == 75


async def test_a_csv_row_with_a_grouped_code_and_a_category_name_imports(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8107, 0)
    code = member.member_code
    bought = (NOW - timedelta(hours=1)).astimezone(sandbox.config.program.tz).isoformat()
    rows = [
        f"R-CSV-1,{grouped(code)},100元,绿色环保商品,{bought}",
        f'R-CSV-2,{dashed(code)},¥10,"Refills and package-free goods",{bought}',
        f"R-CSV-3,{code},10,ECO,{bought}",
        f"R-CSV-4,{grouped(wrong_check_digit(code))},10,eco,{bought}",
        f"R-CSV-5,{code},10,玩具,{bought}",
    ]
    lines = ["receipt_id,member_code,amount,category,purchased_at\n", *(r + "\n" for r in rows)]
    conn = connect_sync(sandbox.config.storage.path)
    try:
        summary = import_purchases(
            conn, lines, sandbox.config, actor="import:pos.csv", now=sandbox.services.clock()
        )
    finally:
        conn.close()
    assert (summary.imported, summary.skipped_total) == (3, 2)
    assert [(r.line, r.reason) for r in summary.rejected] == [(5, "member_code"), (6, "category")]
    assert "玩具" in summary.rejected[1].message
    # and 30 for the third green purchase this month (the sample's eco_monthly task)
    assert await available(sandbox, member) == 200 + 15 + 20 + 30
    [statement] = await sandbox.member(8107).send("/history")
    assert "小票 R-CSV-1" in (statement.text or "")


async def redeemed_code(sandbox: Sandbox, member: Member, sku: str, points: int) -> str:
    """The code of a redemption the member made just now."""
    mall = sandbox.services.mall
    offer = await mall.create_offer(member.id, sku, points, now=NOW, ttl=timedelta(minutes=10))
    return (await mall.redeem(offer.id, member.id, now=NOW, actor="t")).code


@pytest.mark.parametrize(
    ("language", "done", "refused"),
    [
        (
            "zh-hans",
            "✅ {code}（满 100 减 10 元券）已核销。",
            "⚠️ {code} 不能核销：当前状态为「已使用」。",
        ),
        ("en", "✅ {code} (", "⚠️ {code} cannot be used: it is “used”."),
    ],
)
async def test_fulfil_a_voucher_code_typed_in_lower_case_and_groups(
    sandbox: Sandbox, language: str, done: str, refused: str
) -> None:
    member = await member_with(sandbox, 8108, 1000)
    code = await redeemed_code(sandbox, member, "VOUCHER-10", 800)
    admin = sandbox.admin(language)
    [reply] = await admin.send(f"/fulfil {code[:4].lower()}-{code[4:].lower()}")
    assert (reply.text or "").startswith(done.format(code=code))
    # Spaced, it is the same code: used now, and said so with the code as stored.
    [again] = await admin.send(f"/fulfil {code[:4]} {code[4:]}")
    assert (again.text or "").startswith(refused.format(code=code))


async def test_the_store_finds_a_redemption_by_its_code_in_any_grouping(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8109, 1000)
    code = await redeemed_code(sandbox, member, "VOUCHER-10", 800)
    for typed in (code.lower(), f"{code[:4]}-{code[4:]}", f" {code[:4]} {code[4:]} "):
        found = await sandbox.services.store.read(
            lambda conn, typed=typed: mall_store.redemption_by_code(conn, typed)
        )
        assert found.code == code
    with pytest.raises(NotFound):
        await sandbox.services.store.read(
            lambda conn: mall_store.redemption_by_code(conn, code[:7])
        )


async def test_reject_a_return_by_a_grouped_code_with_its_reason(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8110, 1000)
    chat = sandbox.member(8110)
    code = await redeemed_code(sandbox, member, "BAG-01", 300)
    # Picked up, then brought back: a return staff decide on.
    await sandbox.admin().send(f"/fulfil {code}")
    await chat.send("/redemptions")
    await chat.tap(f"申请退货 {code}")
    await chat.tap("商品损坏或有质量问题")
    [rejected] = await sandbox.admin().send(f"/reject_return {code[:4]} {code[4:].lower()} 已拆封")
    assert rejected.text == f"已驳回 {code} 的退货申请，会员已收到通知。"
    await chat.emu.wait_for(8110, lambda: "未通过：已拆封" in (chat.last_text or ""), 5)
    assert await available(sandbox, member) == 700


@pytest.mark.parametrize("configure", [[with_wheel()]])
@pytest.mark.parametrize(
    ("language", "done"), [("zh-hans", "✅ 奖品券 {code}（"), ("en", "✅ Prize voucher {code} (")]
)
async def test_fulfil_a_prize_voucher_typed_in_groups(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]], language: str, done: str
) -> None:
    await member_with(sandbox, 8111, 0, language)
    chat = sandbox.member(8111, language_code=language)
    sandbox.services.game_random = ForcedDraws(BAG)
    await chat.send("/wheel")
    await chat.tap(1, expect=3)
    member = await sandbox.services.members.by_telegram_id(8111)
    assert member is not None
    [voucher], _total = await sandbox.services.store.read(
        lambda conn: games_store.vouchers(conn, member.id)
    )
    code = voucher.code
    [reply] = await sandbox.admin(language).send(f"/fulfil_prize {code[:4].lower()} {code[4:]}")
    assert (reply.text or "").startswith(done.format(code=code))
    assert code in (reply.text or "")


@pytest.mark.parametrize(
    ("language", "answer"), [("zh-hans", "没有需要取消的操作。"), ("en", "Nothing to cancel.")]
)
async def test_cancel_with_nothing_open(sandbox: Sandbox, language: str, answer: str) -> None:
    chat = sandbox.member(8112, language_code=language)
    await chat.send("/start")
    [reply] = await chat.send("/cancel")
    assert reply.text == answer
    [unknown] = await chat.send("/teleport")
    assert "/teleport" in (unknown.text or "")


async def test_cancel_inside_a_flow_still_leaves_that_flow(sandbox: Sandbox) -> None:
    chat = sandbox.member(8113)
    await chat.send("/start")
    await chat.send("/feedback")
    [cancelled] = await chat.send("/cancel")
    assert cancelled.text == "已取消，没有提交建议。"
    [nothing] = await chat.send("/cancel")
    assert nothing.text == "没有需要取消的操作。"
    english = sandbox.member(8114, language_code="en")
    await english.send("/start")
    await english.send("/settings")
    await english.tap(1)  # the birthday question
    [left] = await english.send("/cancel")
    assert left.text == "Cancelled; your settings are unchanged."
    [again] = await english.send("/cancel")
    assert again.text == "Nothing to cancel."


@pytest.mark.parametrize(
    ("language", "mine", "back", "home"),
    [
        ("zh-hans", "🎫 我的兑换", "◀ 返回积分商城", "🛍 积分商城"),
        ("en", "🎫 My redemptions", "◀ Back to the mall", "🛍 Points mall"),
    ],
)
async def test_my_redemptions_inside_the_mall_has_a_way_back(
    sandbox: Sandbox, language: str, mine: str, back: str, home: str
) -> None:
    member = await member_with(sandbox, 8115, 5000, language)
    for _ in range(6):  # more than a page (five)
        await redeemed_code(sandbox, member, "VOUCHER-10", 800)
    chat = sandbox.member(8115, language_code=language)
    await chat.send("/mall")
    await chat.tap(mine)
    first = chat.buttons()
    assert first[-1] == back and first[-2] in ("下一页 ▶", "Next ▶")
    await chat.tap(first[-2])  # the next page keeps its way back
    assert chat.buttons()[-1] == back
    await chat.tap(back)
    assert (chat.last_text or "").startswith(home)
    assert mine in chat.buttons()


async def test_my_redemptions_by_command_offer_the_mall(sandbox: Sandbox) -> None:
    await member_with(sandbox, 8116, 0)
    chat = sandbox.member(8116)
    [empty] = await chat.send("/redemptions")
    assert empty.buttons == ["🛍 去积分商城"]
    await chat.tap("🛍 去积分商城")
    assert (chat.last_text or "").startswith("🛍 积分商城")
    english = sandbox.member(8117, language_code="en")
    member = await member_with(sandbox, 8117, 1000, "en")
    await redeemed_code(sandbox, member, "VOUCHER-10", 800)
    [listing] = await english.send("/redemptions")
    assert listing.buttons[-1] == "🛍 Go to the points mall"
