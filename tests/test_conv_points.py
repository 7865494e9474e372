"""A member's own points through the sandbox: /balance, /history paging, /card."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.programme.calendar import end_of_day
from bot.qr import qr_png
from bot.sandbox.server import image_size
from storage.members import Member
from tests.conftest import NOW, Sandbox


async def registered(sandbox: Sandbox, user_id: int, language: str = "zh-hans") -> Member:
    """Register a member by having them send /start."""
    await sandbox.member(user_id, language_code=language).send("/start")
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    return member


async def earn(
    sandbox: Sandbox,
    member: Member,
    points: int,
    key: str,
    *,
    expires_at: datetime | None,
    now: datetime | None = None,
) -> None:
    """Credit points straight through the ledger (what a till or a job would do)."""
    await sandbox.services.ledger.earn(
        member.id, points, kind="purchase", key=key, actor="test", expires_at=expires_at, now=now
    )


async def test_balance_groups_expiry_by_local_day(sandbox: Sandbox) -> None:
    member = await registered(sandbox, 7001)
    tz = sandbox.config.program.tz
    today = NOW.astimezone(tz).date()
    soon, later = today + timedelta(days=20), today + timedelta(days=200)
    # Two lots ending on the same local day are one line; a never-expiring lot comes last.
    await earn(sandbox, member, 100, "a", expires_at=end_of_day(soon, sandbox.config))
    await earn(sandbox, member, 30, "b", expires_at=end_of_day(soon, sandbox.config))
    await earn(sandbox, member, 70, "c", expires_at=end_of_day(later, sandbox.config))
    await earn(sandbox, member, 5, "d", expires_at=None)
    await sandbox.services.ledger.spend(
        member.id, 40, key="s", actor="test", reason=None, reference=None
    )
    [reply] = await sandbox.member(7001).send("/balance")
    assert reply.text == "\n".join(
        [
            "💰 可用积分：165",
            "到期时间：",
            f"• 90 积分有效至 {soon.isoformat()}",
            f"• 70 积分有效至 {later.isoformat()}",
            "• 5 积分永久有效",
            "累计获得：205 积分（您账户收到过的全部积分，含消费、奖励、补偿、调整增加和家人转入）",
            "",
            # Points credited straight to the ledger are no purchase: nothing towards a tier.
            "会员等级：🌱绿芽 · 本年度消费 ¥0",
            "░░░░░░░░░░ 再消费 ¥1,000 升级为🍃绿叶",
        ]
    )


async def test_expired_points_are_not_shown_as_available(sandbox: Sandbox) -> None:
    member = await registered(sandbox, 7002, "en")
    now = NOW
    await earn(sandbox, member, 50, "old", expires_at=now + timedelta(seconds=1), now=now)
    await earn(sandbox, member, 20, "new", expires_at=now + timedelta(days=30), now=now)
    await sandbox.services.ledger.spend(
        member.id, 1, key="s", actor="t", reason=None, reference=None, now=now
    )
    # The first lot lapses; until the sweep books it, /balance must already leave it out.
    later = now + timedelta(seconds=2)
    summary = await sandbox.services.ledger.balance(member.id, later)
    assert summary.available == 20
    assert summary.lifetime_earned == 70


async def test_balance_of_a_new_member_explains_how_to_earn(sandbox: Sandbox) -> None:
    [reply] = await sandbox.member(7003, language_code="en").send("/balance")
    assert reply.text == "\n".join(
        [
            "💰 Available points: 0",
            "You have no points to use yet. Every purchase earns points; send /rules to see how.",
            "Received in total: 0 points (every point ever added to your account: purchases,"
            " rewards, compensation, adjustments in your favour and transfers from family)",
            "",
            "Tier: 🌱Sprout · ¥0 spent this year",
            "░░░░░░░░░░ Spend ¥1,000 more to reach 🍃Leaf",
        ]
    )
    # Asking was enough to become a member: a cashier can now award points to the code.
    assert await sandbox.services.members.by_telegram_id(7003) is not None


async def test_balance_from_the_menu_button(sandbox: Sandbox) -> None:
    member = sandbox.member(7004)
    await member.send("/start")
    await member.tap("💰 我的积分")
    assert (member.last_text or "").startswith("💰 可用积分：0")


async def test_history_pages_back_and_forth(sandbox: Sandbox) -> None:
    member = await registered(sandbox, 7010, "en")
    expiry = NOW + timedelta(days=300)
    for i in range(1, 20):  # 19 purchases of i points: 3 pages of 8, 8, 3
        await sandbox.services.ledger.earn(
            member.id,
            i,
            kind="purchase",
            key=f"p{i}",
            actor="t",
            expires_at=expiry,
            reference=f"R{i:03d}",
        )
    chat = sandbox.member(7010)
    [first] = await chat.send("/history")
    lines = (first.text or "").splitlines()
    assert lines[0] == "🧾 Points history (page 1 of 3, 19 entries)"
    assert len(lines) == 9
    assert "Purchase  +19 · receipt R019" in lines[1]
    assert first.buttons == ["Older ▶"]

    await chat.tap("Older ▶")
    page2 = chat.last_message
    assert page2 is not None and page2.message_id == first.message_id  # edited in place
    assert (page2.text or "").splitlines()[0] == "🧾 Points history (page 2 of 3, 19 entries)"
    assert "+11 · receipt R011" in (page2.text or "")
    assert page2.buttons == ["◀ Newer", "Older ▶"]

    await chat.tap("Older ▶")
    page3 = chat.last_message
    assert page3 is not None
    assert (page3.text or "").splitlines()[1:] != []
    assert "+1 · receipt R001" in (page3.text or "")
    assert page3.buttons == ["◀ Newer"]

    await chat.tap("◀ Newer")
    assert "page 2 of 3" in (chat.last_text or "")


async def test_history_shows_spends_newest_first(sandbox: Sandbox) -> None:
    member = await registered(sandbox, 7011)
    await earn(sandbox, member, 100, "e", expires_at=None)
    await sandbox.services.ledger.spend(
        member.id, 30, key="s", actor="t", reason="环保购物袋", reference="R-9"
    )
    [reply] = await sandbox.member(7011).send("/history")
    text = reply.text or ""
    # A spend no mall redemption records (tests/test_conv_statements.py has the real ones)
    # still reads as a redemption, and never shows what the ledger was handed as a reference.
    assert "兑换  -30 · 商城商品" in text and "R-9" not in text
    assert "消费积分  +100" in text
    assert text.index("兑换") < text.index("消费积分")  # newest first
    assert reply.buttons == []


async def test_empty_history(sandbox: Sandbox) -> None:
    [reply] = await sandbox.member(7012).send("/history")
    assert reply.text == "还没有积分记录。消费后积分会显示在这里。"


async def test_forged_history_page_changes_nothing(sandbox: Sandbox) -> None:
    member = await registered(sandbox, 7013)
    await earn(sandbox, member, 10, "e", expires_at=None)
    chat = sandbox.member(7013)
    [reply] = await chat.send("/history")
    for forged in ("hist:99", "hist:-1", "hist:abc", "hist:99999999999"):
        await chat.tap_data(reply.message_id, forged, expect=0)
        assert chat.last_callback_answer == "此按钮已失效，请重新操作。"
    current = chat.emu.message(7013, reply.message_id)
    assert current is not None and current.text == reply.text


async def test_another_member_cannot_page_my_history(sandbox: Sandbox) -> None:
    owner = await registered(sandbox, 7014)
    for i in range(10):
        await earn(sandbox, owner, 1000 + i, f"o{i}", expires_at=None)
    await registered(sandbox, 7015)
    # A tap always shows the tapper's own statement, whatever the button says.
    snoop = sandbox.member(7015)
    [mine] = await snoop.send("/history")
    await snoop.tap_data(mine.message_id, "hist:1", expect=0)
    assert snoop.last_callback_answer == "此按钮已失效，请重新操作。"
    # The owner's newest line reads "+1009"; the snoop's own member code (random) may hold
    # the digits 1009, so the sign is part of what must not show.
    assert "+1009" not in "".join(m.text or "" for m in snoop.messages)


async def test_card_is_a_scannable_qr_with_the_member_code(sandbox: Sandbox) -> None:
    member = await registered(sandbox, 7020, "en")
    [reply] = await sandbox.member(7020).send("/card")
    assert reply.kind == "photo"
    code = member.member_code
    grouped = f"{code[:4]} {code[4:8]} {code[8:]}"
    assert reply.caption == (
        f"🪪 红米好物 member card\n小明: {grouped}\n"
        "Show this QR code to the cashier at checkout, or read out your member code."
    )
    assert reply.photo is not None and reply.photo.startswith(b"\x89PNG")
    assert reply.photo == qr_png(code)  # the symbol encodes exactly the member code
    width, height = image_size(reply.photo)
    assert width == height and width >= 150
